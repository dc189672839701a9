"""The seams with os-brick and rtslib-fb: every name, signature and call the
code relies on beyond those libraries' documented surface.

``iscsiattach/host/brick.py`` subclasses os-brick's ISCSIConnector and
overrides private methods; the most important is ``_iscsiadm_update``, the
one way os-brick sets CHAP values, which our override writes into the 0600
node record instead of onto iscsiadm's command line. If os-brick renamed it,
or set CHAP some other way, the secret would go back into ``ps`` with no
error anywhere. ``iscsiattach/targets/`` calls rtslib's private
``_check_self()`` to load the iSCSI fabric. Each check below fails with a
message naming the seam; a failure means: read the new library code at that
seam, adapt ours, then move the pin in setup.cfg (README, "Dependencies").

rtslib is imported directly here, not through the project's LIO module.
"""
from __future__ import annotations

import ast
import configparser
import importlib
import importlib.metadata
import inspect
import textwrap
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from iscsiattach.host import brick, node_record

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"
SECRET = "s3cret-never-on-argv"


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def _accepts(func, names: list[str], what: str) -> None:
    got = _params(func)
    missing = [n for n in names if n not in got]
    assert not missing, f"seam {what}: parameters {missing} are gone (now {got})"
    # The names we pass positionally must keep their order, first after self.
    assert got[:len(names)] == names, f"seam {what}: parameters are now {got}, we rely on {names}"


def _calls(func) -> list[ast.Call]:
    """The calls in ``func``'s own source (decorators unwrapped)."""
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(func)))
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]


def _called(func, dotted: str) -> list[ast.Call]:
    return [c for c in _calls(func) if ast.unparse(c.func) == dotted]


def _var_keyword(func) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(func).parameters.values())


def _set_in_init(cls) -> set[str]:
    """Instance attributes that ``cls.__init__`` assigns (``self.x = ...``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.ctx, ast.Store) and ast.unparse(n.value) == "self"}


# -- os-brick ----------------------------------------------------------------

@pytest.fixture(scope="module")
def connectors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # eventlet's deprecation notice
        from os_brick.initiator import linuxscsi
        from os_brick.initiator.connectors import iscsi
    return iscsi, linuxscsi


# (method of ISCSIConnector or LinuxSCSI, the parameters our code uses or
# overrides, in order after self)
BRICK_METHODS = [
    ("ISCSIConnector.__init__", ["root_helper"]),
    ("ISCSIConnector.connect_volume", ["connection_properties"]),
    ("ISCSIConnector.disconnect_volume",
     ["connection_properties", "device_info", "force", "ignore_errors"]),
    ("ISCSIConnector.check_multipath", ["connection_properties"]),
    ("ISCSIConnector._run_iscsiadm", ["connection_properties", "iscsi_command", "kwargs"]),
    ("ISCSIConnector._get_iscsi_sessions_full", []),
    ("ISCSIConnector._get_iscsi_nodes", []),
    ("ISCSIConnector._iscsiadm_update",
     ["connection_properties", "property_key", "property_value", "kwargs"]),
    ("LinuxSCSI.get_sysfs_wwn", ["device_names", "mpath"]),
    ("LinuxSCSI.device_name_by_hctl", ["session", "hctl"]),
    ("LinuxSCSI.echo_scsi_command", ["path", "content"]),
    ("LinuxSCSI.flush_device_io", ["device"]),
]


@pytest.mark.parametrize("where, names", BRICK_METHODS, ids=[m[0] for m in BRICK_METHODS])
def test_os_brick_methods_we_use_or_override_keep_their_names(connectors, where, names):
    iscsi, linuxscsi = connectors
    owner, _, method = where.partition(".")
    cls = iscsi.ISCSIConnector if owner == "ISCSIConnector" else linuxscsi.LinuxSCSI
    func = getattr(cls, method, None)
    assert func is not None, f"seam os-brick {where}: gone (host/brick.py uses or overrides it)"
    _accepts(func, ["self", *names], f"os-brick {where}")


def test_our_connector_keyword_arguments_exist(connectors):
    iscsi, _ = connectors
    for name in ("use_multipath", "device_scan_attempts"):
        assert name in _params(iscsi.ISCSIConnector.__init__), \
            f"seam os-brick ISCSIConnector({name}=): no such parameter (brick._iscsi passes it)"


def test_every_override_in_brick_py_overrides_something(connectors):
    """A method of our subclass whose os-brick name is gone is never called."""
    iscsi, _ = connectors
    ours = type(brick._iscsi(False))
    for name, func in vars(ours).items():
        if not inspect.isfunction(func) or name == "__init__":
            continue
        base = getattr(iscsi.ISCSIConnector, name, None)
        assert base is not None, f"seam os-brick ISCSIConnector.{name}: gone, our override is dead"
        # Whatever os-brick passes to its own method must fit ours.
        sig = inspect.signature(base)
        args = [p.name for p in sig.parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
        try:
            inspect.signature(func).bind(*args)
        except TypeError as exc:
            pytest.fail(f"seam os-brick ISCSIConnector.{name}{sig}: our override no longer "
                        f"fits ({exc})")
        # os-brick's callers pass keywords (check_exit_code=...) where it takes **kwargs.
        if _var_keyword(base):
            assert _var_keyword(func), f"seam os-brick ISCSIConnector.{name}: ours needs **kwargs"


def test_the_connector_keeps_its_linuxscsi_helper(connectors):
    iscsi, linuxscsi = connectors
    conn = iscsi.ISCSIConnector(root_helper="")
    assert isinstance(getattr(conn, "_linuxscsi", None), linuxscsi.LinuxSCSI), \
        "seam os-brick ISCSIConnector._linuxscsi: gone (brick.py wraps its methods)"


def test_chap_settings_go_only_through_iscsiadm_update(connectors):
    """The CHAP secret stays off iscsiadm's argv only because os-brick sets
    every node.session.auth.* value through ``self._iscsiadm_update``, the
    method brick.py overrides. Any other way of setting one fails here."""
    iscsi, _ = connectors
    tree = ast.parse(inspect.getsource(iscsi))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    keys = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and n.value.startswith("node.session.auth.")]
    assert "node.session.auth.password" in {k.value for k in keys}, \
        "seam os-brick CHAP: node.session.auth.password is no longer set in connectors/iscsi.py"
    for key in keys:
        call = parents.get(key)
        assert isinstance(call, ast.Call) and ast.unparse(call.func) == "self._iscsiadm_update", \
            (f"seam os-brick CHAP: {key.value} is set by `{ast.unparse(call or key)}` "
             f"(line {key.lineno}), not through self._iscsiadm_update (brick.py's override)")


# (os-brick method, the call in it that brick.py's change relies on)
BRICK_CALLS = [
    ("ISCSIConnector._connect_to_iscsi_portal_unsafe", "self._iscsiadm_update"),
    ("ISCSIConnector._connect_to_iscsi_portal_unsafe", "self._run_iscsiadm"),
    ("ISCSIConnector._connect_to_iscsi_portal_unsafe", "self._get_iscsi_sessions_full"),
    ("ISCSIConnector._disconnect_from_iscsi_portal", "self._iscsiadm_update"),
    ("ISCSIConnector.connect_volume", "self.check_multipath"),
    ("ISCSIConnector._connect_single_volume", "self._linuxscsi.get_sysfs_wwn"),
    ("ISCSIConnector._connect_vol", "self._linuxscsi.device_name_by_hctl"),
    ("ISCSIConnector._connect_vol", "self._linuxscsi.scan_iscsi"),
    ("LinuxSCSI.scan_iscsi", "self.echo_scsi_command"),
    ("ISCSIConnector._get_connection_devices", "self._get_iscsi_nodes"),
    ("ISCSIConnector._get_ips_iqns_luns", "self._get_all_targets"),
    ("LinuxSCSI.remove_connection", "self.is_multipath_running"),
]


@pytest.mark.parametrize("where, call", BRICK_CALLS, ids=[f"{w}->{c}" for w, c in BRICK_CALLS])
def test_os_brick_still_calls_what_we_override(connectors, where, call):
    iscsi, linuxscsi = connectors
    owner, _, method = where.partition(".")
    cls = iscsi.ISCSIConnector if owner == "ISCSIConnector" else linuxscsi.LinuxSCSI
    func = getattr(cls, method, None)
    assert func is not None, f"seam os-brick {where}: gone (it called {call}, which we change)"
    assert _called(func, call), f"seam os-brick {where}: no longer calls {call}"


def test_the_record_check_is_a_bare_iscsiadm_run(connectors):
    """brick.py answers `_run_iscsiadm(props, ())` from the record file."""
    iscsi, _ = connectors
    calls = _called(iscsi.ISCSIConnector._connect_to_iscsi_portal_unsafe, "self._run_iscsiadm")
    bare = [c for c in calls if len(c.args) > 1 and ast.unparse(c.args[1]) == "()"]
    assert bare, "seam os-brick _run_iscsiadm(props, ()): the record check is no longer a bare run"
    # A missing record is answered as iscsiadm's exit 21, which the caller accepts.
    accepts = [ast.unparse(k.value) for c in bare for k in c.keywords if k.arg == "check_exit_code"]
    assert any("21" in a for a in accepts), \
        f"seam os-brick _run_iscsiadm(props, ()): exit 21 no longer accepted ({accepts})"


def test_is_multipath_running_is_asked_with_keywords(connectors):
    """brick.multipath_running wraps it and passes whatever os-brick passes."""
    _, linuxscsi = connectors
    assert "root_helper" in _params(linuxscsi.LinuxSCSI.is_multipath_running), \
        "seam os-brick LinuxSCSI.is_multipath_running: its parameters changed"


def test_sessions_keep_the_shape_brick_py_gives_them(connectors):
    """host/sessions.py returns what os-brick parses out of iscsiadm."""
    iscsi, _ = connectors
    conn = iscsi.ISCSIConnector(root_helper="")
    conn._run_iscsi_session = lambda: (
        "tcp: [7] 10.0.0.2:3260,1 iqn.2010-10.org.x:w (non-flash)\n"
        "tcp: [8] [fd00::1]:3260,1 iqn.2010-10.org.x:v (non-flash)\n", "")
    got = iscsi.ISCSIConnector._get_iscsi_sessions_full(conn)
    assert got == [("tcp:", "7", "10.0.0.2:3260", "1", "iqn.2010-10.org.x:w"),
                   ("tcp:", "8", "[fd00::1]:3260", "1", "iqn.2010-10.org.x:v")], \
        f"seam os-brick _get_iscsi_sessions_full: its session tuples changed shape ({got})"


def test_a_chap_login_puts_no_secret_on_any_command_line(connectors, tmp_path, monkeypatch):
    """os-brick's own portal login, through our connector, with every
    program run recorded: the password reaches the record, never argv."""
    iqn, portal = "iqn.2010-10.org.x:v", "10.0.0.1:3260"
    record = tmp_path / iqn / "10.0.0.1,3260"
    record.parent.mkdir()
    record.write_text("node.name = x\n")
    monkeypatch.setattr(node_record, "NODE_DIRS", (str(tmp_path),))
    from os_brick.initiator import utils as initiator_utils  # os-brick sets it below
    monkeypatch.setattr(initiator_utils, "ISCSI_SUPPORTS_MANUAL_SCAN",
                        initiator_utils.ISCSI_SUPPORTS_MANUAL_SCAN)
    answers = iter([[], [("tcp:", "1", portal, "1", iqn)]])      # before, after the login
    monkeypatch.setattr(brick, "iscsi_sessions", lambda: next(answers))
    conn, ran = brick._iscsi(False), []
    monkeypatch.setattr(conn, "_execute", lambda *cmd, **kw: ran.append(cmd) or ("", ""))
    props = {"target_iqn": iqn, "target_portal": portal, "target_lun": 0,
             "auth_method": "CHAP", "auth_username": "user-1", "auth_password": SECRET}
    assert conn._connect_to_iscsi_portal_unsafe(props)[0] == "1"
    assert any("--login" in cmd for cmd in ran), "the login did not run: test broken"
    leaked = [cmd for cmd in ran if any(SECRET in str(arg) for arg in cmd)]
    assert not leaked, f"seam os-brick CHAP: the secret went onto a command line: {leaked}"
    assert f"node.session.auth.password = {SECRET}" in record.read_text().splitlines()


def test_os_brick_setup_and_privsep_contexts(connectors):
    import os_brick
    from os_brick import privileged
    _accepts(os_brick.setup, ["conf"], "os_brick.setup")
    for name in ("default", "brick_privsep_hide_output"):
        context = getattr(privileged, name, None)
        assert context is not None, f"seam os_brick.privileged.{name}: gone (brick.setup)"
        _accepts(context.set_client_mode, ["enabled"],
                 f"os_brick.privileged.{name}.set_client_mode")


# -- rtslib-fb ---------------------------------------------------------------

# (constructor, the parameters we pass, in order)
RTSLIB_CONSTRUCTORS = [
    ("Target", ["fabric_module", "wwn", "mode"]),
    ("TPG", ["parent_target", "tag", "mode"]),
    ("NodeACL", ["parent_tpg", "node_wwn", "mode"]),
    ("MappedLUN", ["parent_nodeacl", "mapped_lun", "tpg_lun", "write_protect"]),
    ("LUN", ["parent_tpg", "lun", "storage_object"]),
    ("NetworkPortal", ["parent_tpg", "ip_address", "port", "mode"]),
    ("FileIOStorageObject", ["name", "dev"]),
    ("BlockStorageObject", ["name", "dev"]),
]
# (class, attributes and methods we read, write or call)
RTSLIB_MEMBERS = [
    ("RTSRoot", ["dbroot"]),
    ("Target", ["wwn", "delete"]),
    ("TPG", ["enable", "get_attribute", "set_attribute", "get_parameter", "set_parameter",
             "parent_target", "node_acls", "path"]),
    ("NodeACL", ["node_wwn", "chap_userid", "chap_password", "chap_mutual_userid",
                 "chap_mutual_password", "delete", "path"]),
    ("MappedLUN", ["write_protect", "delete"]),
    ("LUN", ["delete"]),
    ("NetworkPortal", ["delete"]),
    ("FileIOStorageObject", ["udev_path", "size", "wwn", "path"]),
    ("BlockStorageObject", ["udev_path", "wwn", "path"]),
]


@pytest.mark.parametrize("name, params", RTSLIB_CONSTRUCTORS,
                         ids=[c[0] for c in RTSLIB_CONSTRUCTORS])
def test_rtslib_constructors_keep_their_parameters(name, params):
    import rtslib_fb
    cls = getattr(rtslib_fb, name, None)
    assert cls is not None, f"seam rtslib_fb.{name}: gone"
    _accepts(cls.__init__, ["self", *params], f"rtslib_fb.{name}()")


def test_rtslib_storage_objects_take_their_slot_by_keyword():
    import rtslib_fb
    for name in ("FileIOStorageObject", "BlockStorageObject"):
        assert "index" in _params(getattr(rtslib_fb, name)), \
            f"seam rtslib_fb.{name}(index=): no such parameter (our backstore slots)"


@pytest.mark.parametrize("name, members", RTSLIB_MEMBERS, ids=[m[0] for m in RTSLIB_MEMBERS])
def test_rtslib_members_we_use_exist(name, members):
    import rtslib_fb
    cls = getattr(rtslib_fb, name)
    gone = [m for m in members if not hasattr(cls, m) and m not in _set_in_init(cls)]
    assert not gone, f"seam rtslib_fb.{name}: {gone} gone"


def test_rtslib_tpg_settings_take_name_and_value():
    from rtslib_fb import TPG
    for method, params in (("get_attribute", ["attribute"]), ("set_attribute",
                           ["attribute", "value"]), ("get_parameter", ["parameter"]),
                           ("set_parameter", ["parameter", "value"])):
        assert len(_params(getattr(TPG, method))) == 1 + len(params), \
            f"seam rtslib_fb.TPG.{method}: now {_params(getattr(TPG, method))}, we pass {params}"


def test_rtslib_errors_keep_their_module():
    """Imported as the LIO backend does: rtslib-fb 2.2.2 and 2.2.3 made
    ``rtslib_fb`` a one-file alias of ``rtslib``, where this import fails."""
    try:
        utils = importlib.import_module("rtslib_fb.utils")
    except ImportError as exc:
        pytest.fail(f"seam rtslib_fb.utils: cannot be imported ({exc})")
    assert isinstance(getattr(utils, "RTSLibError", None), type), \
        "seam rtslib_fb.utils.RTSLibError: gone (targets translate it into TargetError)"


def test_the_iscsi_fabric_still_loads_itself_in_check_self():
    """The LIO backend calls FabricModule("iscsi")._check_self() to create the
    fabric's configfs folder (loading iscsi_target_mod if needed): rtslib's
    private method, not the plain existence check every CFSNode has."""
    from rtslib_fb import FabricModule
    from rtslib_fb.node import CFSNode
    fabric = FabricModule("iscsi")
    check = getattr(type(fabric), "_check_self", None)
    assert check is not None, "seam rtslib FabricModule._check_self: gone"
    assert _params(check) == ["self"], \
        f"seam rtslib FabricModule._check_self: parameters now {_params(check)}"
    assert check is not CFSNode._check_self and "modprobe" in inspect.getsource(check), \
        "seam rtslib FabricModule._check_self: no longer loads the fabric (no modprobe)"
    assert hasattr(fabric, "path"), "seam rtslib FabricModule.path: gone"


# -- versions ------------------------------------------------------------------

def _pinned() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line) for line in lines if line.strip()]


@pytest.mark.parametrize("req", _pinned(), ids=str)
def test_installed_versions_are_inside_setup_cfg_ranges(req):
    assert req.specifier, f"{req.name} has no range in setup.cfg: pin it"
    assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), \
        f"{req.name} has no upper bound in setup.cfg"
    try:
        have = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{req.name} is not installed: run tools/setup")
    assert req.specifier.contains(have, prereleases=True), \
        f"{req.name} {have} is outside setup.cfg's tested range {req.specifier}: run tools/setup"
