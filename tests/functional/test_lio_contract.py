"""The target contract (tests/contract) on the kernel's LIO."""
from tests.contract.target_contract import TargetContract


class TestLioContract(TargetContract):
    """Fixtures backend, tamper and make_backing come from conftest.py."""
