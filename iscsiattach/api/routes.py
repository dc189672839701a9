"""The served part of the Block Storage API v3: versions, attachments, volumes.

Request bodies are checked strictly (unknown keys refused, as Cinder's
schemas do); the service does the rest of the validation. See
docs/cinder-api-compat.md for the wire facts these follow.
"""
from __future__ import annotations

import re
from typing import Any

from iscsiattach.api import microversion as mv
from iscsiattach.api.faults import HttpError
from iscsiattach.api.metrics import CONTENT_TYPE as METRICS_TYPE, Metrics
from iscsiattach.api import views
from iscsiattach.api.wsgi import Application, Auth, Request, Response, Route, v3_route
from iscsiattach.attachments.services import Services
from iscsiattach.exception import InvalidInput

UPDATED = "2026-11-25T00:00:00Z"
_UUID = r"(?P<id>[0-9a-fA-F-]{36})"
_NULLABLE_VOLUME_KEYS = {"consistencygroup_id", "snapshot_id", "volume_type",
                         "availability_zone", "imageRef", "source_volid", "backup_id",
                         "metadata", "description"}


def _object(body: Any, key: str, allowed: set[str]) -> dict:
    if not isinstance(body, dict) or set(body) != {key} or not isinstance(body[key], dict):
        raise InvalidInput(f"Malformed request body: expected {{\"{key}\": {{...}}}}")
    unknown = set(body[key]) - allowed
    if unknown:
        raise InvalidInput(f"Additional properties are not allowed ({', '.join(sorted(unknown))})")
    return body[key]


def _size(value: Any, what: str) -> int:
    # ASCII digits only: str.isdigit() is also true of "²", which int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"Invalid input for field/attribute {what}. Value: {value!r}.")
    return value


def _versions(req: Request, status: int) -> Response:
    body = {"versions": [{
        "id": "v3.0", "status": "CURRENT", "version": str(mv.MAX), "min_version": str(mv.MIN),
        "updated": UPDATED,
        "links": [{"rel": "describedby", "type": "text/html",
                   "href": "https://docs.openstack.org/"},
                  {"rel": "self", "href": f"{req.base_url}/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.volume+json;version=3"}]}]}
    return Response(status, body)


class Api:
    def __init__(self, services: Services) -> None:
        self.s = services

    # -- attachments --------------------------------------------------------
    def attachment_create(self, req: Request) -> Response:
        allowed = {"volume_uuid", "instance_uuid", "connector"}
        if req.version >= mv.ATTACH_MODE:
            allowed.add("mode")
        body = _object(req.json(), "attachment", allowed)
        if "volume_uuid" not in body:
            raise InvalidInput("'volume_uuid' is a required property")
        connector = body.get("connector") or None      # {} or null: reserve only
        att, info = self.s.attachments.create(body["volume_uuid"], body.get("instance_uuid"),
                                              connector, mode=body.get("mode"))
        return Response(200, {"attachment": views.attachment_detail(att, info)})

    def attachment_update(self, req: Request) -> Response:
        body = _object(req.json(), "attachment", {"connector"})
        if not isinstance(body.get("connector"), dict) or not body["connector"]:
            raise InvalidInput("'connector' is a required property with at least one entry")
        att, info = self.s.attachments.update(req.params["id"], body["connector"])
        return Response(200, {"attachment": views.attachment_detail(att, info)})

    def attachment_action(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or list(body) != ["os-complete"]:
            raise InvalidInput("Malformed request body: the only action is os-complete")
        if req.version < mv.ATTACH_COMPLETE:
            raise HttpError(404, "The resource could not be found.")
        self.s.attachments.complete(req.params["id"])
        return Response(204)

    def attachment_delete(self, req: Request) -> Response:
        try:
            volume_id = self.s.attachments.show(req.params["id"]).volume_id
        except Exception:     # noqa: BLE001 - gone already: delete still succeeds
            volume_id = None
        self.s.attachments.delete(req.params["id"])
        left = self.s.attachments.list(volume_id) if volume_id else []
        return Response(200, {"attachments": [views.attachment_summary(a) for a in left]})

    def attachment_show(self, req: Request) -> Response:
        att = self.s.attachments.show(req.params["id"])
        return Response(200, {"attachment": views.attachment_detail(att)})

    def attachment_list(self, req: Request, detail: bool = False) -> Response:
        atts = self.s.attachments.list(req.arg("volume_id"))
        wanted = req.arg("attach_status") or req.arg("status")
        if wanted:
            atts = [a for a in atts if a.status == wanted]
        view = views.attachment_detail if detail else views.attachment_summary
        return Response(200, {"attachments": [view(a) for a in _page(req, atts)]})

    # -- volumes ------------------------------------------------------------
    def volume_create(self, req: Request) -> Response:
        body = _object(req.json(), "volume",
                       {"size", "name", "multiattach", "source"} | _NULLABLE_VOLUME_KEYS)
        for key in ("snapshot_id", "source_volid", "imageRef", "backup_id",
                    "consistencygroup_id"):
            if body.get(key):
                raise InvalidInput(f"{key} is not supported by this service")
        vol = self.s.volumes.create(_size(body.get("size"), "size"), body.get("name"),
                                    body.get("multiattach") or False, body.get("source"))
        return Response(202, {"volume": self._volume(req, vol)})

    def volume_show(self, req: Request) -> Response:
        return Response(200, {"volume": self._volume(req, self.s.volumes.show(req.params["id"]))})

    def volume_list(self, req: Request, detail: bool = False) -> Response:
        vols = _page(req, self.s.volumes.list())
        if detail:
            return Response(200, {"volumes": [self._volume(req, v) for v in vols]})
        return Response(200, {"volumes": [views.volume_summary(
            v, views.volume_links(req.base_url, req.project, v.id)) for v in vols]})

    def volume_delete(self, req: Request) -> Response:
        self.s.volumes.delete(req.params["id"])
        return Response(202)

    def volume_action(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or list(body) != ["os-extend"]:
            raise InvalidInput("Malformed request body: the only volume action is os-extend")
        extend = _object(body, "os-extend", {"new_size"})
        self.s.volumes.extend(req.params["id"], _size(extend.get("new_size"), "new_size"))
        return Response(202)

    def _volume(self, req: Request, vol) -> dict:
        links = views.volume_links(req.base_url, req.project, vol.id)
        return views.volume_detail(vol, self.s.attachments.list(vol.id), links, req.project)


def _page(req: Request, items: list) -> list:
    marker, limit = req.arg("marker"), req.arg("limit")
    if marker:
        ids = [i.id for i in items]
        if marker not in ids:
            raise InvalidInput(f"marker {marker} not found")
        items = items[ids.index(marker) + 1:]
    if limit is not None:
        if not (limit.isascii() and limit.isdigit()):
            raise InvalidInput(f"limit must be a non-negative integer, not {limit!r}")
        items = items[:int(limit)]
    return items


def build_app(services: Services, auth: Auth, metrics: Metrics | None = None) -> Application:
    api = Api(services)
    metrics = metrics or Metrics(services.store)
    att, vol = "/attachments", "/volumes"
    routes = [
        v3_route("GET", "", lambda r: _versions(r, 200), "versions"),
        v3_route("POST", att, api.attachment_create, "attachment-create", mv.ATTACHMENTS),
        v3_route("GET", att, api.attachment_list, "attachment-list", mv.ATTACHMENTS),
        v3_route("GET", att + "/detail", lambda r: api.attachment_list(r, True),
                 "attachment-list", mv.ATTACHMENTS),
        v3_route("GET", f"{att}/{_UUID}", api.attachment_show, "attachment-show",
                 mv.ATTACHMENTS),
        v3_route("PUT", f"{att}/{_UUID}", api.attachment_update, "attachment-update",
                 mv.ATTACHMENTS),
        v3_route("DELETE", f"{att}/{_UUID}", api.attachment_delete, "attachment-delete",
                 mv.ATTACHMENTS),
        v3_route("POST", f"{att}/{_UUID}/action", api.attachment_action, "attachment-complete",
                 mv.ATTACHMENTS),
        v3_route("POST", vol, api.volume_create, "volume-create"),
        v3_route("GET", vol, api.volume_list, "volume-list"),
        v3_route("GET", vol + "/detail", lambda r: api.volume_list(r, True), "volume-list"),
        v3_route("GET", f"{vol}/{_UUID}", api.volume_show, "volume-show"),
        v3_route("DELETE", f"{vol}/{_UUID}", api.volume_delete, "volume-delete"),
        v3_route("POST", f"{vol}/{_UUID}/action", api.volume_action, "volume-extend"),
    ]
    # Read-only, no secrets: served without a token, for probes and scrapers.
    public = [
        Route("GET", re.compile(r"/?"), lambda r: _versions(r, 300), mv.MIN, "versions"),
        Route("GET", re.compile(r"/metrics"), lambda r: Response(
            200, raw=metrics.exposition(), content_type=METRICS_TYPE), mv.MIN, "metrics"),
        Route("GET", re.compile(r"/healthz"), lambda r: Response(
            200 if metrics.ready else 503, metrics.health()), mv.MIN, "health"),
    ]
    return Application(routes, auth, public, metrics.observe)
