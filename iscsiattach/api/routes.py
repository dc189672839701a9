"""The served part of the Block Storage API v3: versions, attachments, volumes.

Request bodies are checked strictly (unknown keys refused, as Cinder's
schemas do); the service does the rest of the validation. See
docs/cinder-api-compat.md for the wire facts these follow.
"""
from __future__ import annotations

from iscsiattach.api import microversion as mv, openapi, schemas as sc, views
from iscsiattach.api.app import Application, Auth, Operation, Request, Response
from iscsiattach.api.limits import Limits
from iscsiattach.api.metrics import CONTENT_TYPE as METRICS_TYPE, Metrics
from iscsiattach.attachments.attachment_service import AttachmentService
from iscsiattach.attachments.sessions import SessionLister
from iscsiattach.attachments.volume_service import VolumeService
from iscsiattach.attachments.wiring import Services
from iscsiattach.exception import HttpError, InvalidInput

UPDATED = "2026-11-25T00:00:00Z"
_UNSUPPORTED_SOURCES = ("snapshot_id", "source_volid", "imageRef", "backup_id",
                        "consistencygroup_id")


def _size(value: str | int) -> int:
    """A size the schema already bounded: an int, or at most 12 digits."""
    return int(value)


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
    def __init__(self, volume_service: VolumeService, attachment_service: AttachmentService,
                 sessions: SessionLister) -> None:
        self.volume_service, self.attachment_service = volume_service, attachment_service
        self.sessions = sessions

    # -- attachments --------------------------------------------------------
    def attachment_create(self, req: Request) -> Response:
        body = req.json()["attachment"]
        connector = body.get("connector") or None      # {} or null: reserve only
        att, info = self.attachment_service.create(body["volume_uuid"],
                                                   body.get("instance_uuid"), connector,
                                                   mode=body.get("mode"))
        return Response(200, {"attachment": views.attachment_detail(att, info)})

    def attachment_update(self, req: Request) -> Response:
        connector = req.json()["attachment"]["connector"]
        att, info = self.attachment_service.update(req.params["id"], connector)
        return Response(200, {"attachment": views.attachment_detail(att, info)})

    def attachment_action(self, req: Request) -> Response:
        if req.version < mv.ATTACH_COMPLETE:
            raise HttpError(404, "The resource could not be found.")
        self.attachment_service.complete(req.params["id"])
        return Response(204)

    def attachment_delete(self, req: Request) -> Response:
        try:
            volume_id = self.attachment_service.show(req.params["id"]).volume_id
        except Exception:     # noqa: BLE001 - gone already: delete still succeeds
            volume_id = None
        self.attachment_service.delete(req.params["id"])
        left = self.attachment_service.list_attachments(volume_id) if volume_id else []
        return Response(200, {"attachments": [views.attachment_summary(a) for a in left]})

    def attachment_show(self, req: Request) -> Response:
        att = self.attachment_service.show(req.params["id"])
        body = views.attachment_detail(att)
        # Ours: its initiator's sessions on the volume's target, read now.
        body["iscsiattach:sessions"] = [views.session(s)
                                        for s in self.sessions.for_attachment(att)]
        return Response(200, {"attachment": body})

    def session_list(self, req: Request) -> Response:
        found = self.sessions.list_sessions(req.arg("volume_id"))
        return Response(200, {"sessions": [views.session(s) for s in found]})

    def attachment_list(self, req: Request, detail: bool = False) -> Response:
        atts = self.attachment_service.list_attachments(req.arg("volume_id"))
        wanted = req.arg("attach_status") or req.arg("status")
        if wanted:
            atts = [a for a in atts if a.status == wanted]
        view = views.attachment_detail if detail else views.attachment_summary
        return Response(200, {"attachments": [view(a) for a in _page(req, atts)]})

    # -- volumes ------------------------------------------------------------
    def volume_create(self, req: Request) -> Response:
        body = req.json()["volume"]
        for key in _UNSUPPORTED_SOURCES:
            if body.get(key):
                raise InvalidInput(f"{key} is not supported by this service")
        vol = self.volume_service.create(_size(body["size"]), body.get("name"),
                                         body.get("multiattach") or False, body.get("source"))
        return Response(202, {"volume": self._volume(req, vol)})

    def volume_show(self, req: Request) -> Response:
        vol = self.volume_service.show(req.params["id"])
        return Response(200, {"volume": self._volume(req, vol)})

    def volume_list(self, req: Request, detail: bool = False) -> Response:
        vols = _page(req, self.volume_service.list_volumes())
        if detail:
            return Response(200, {"volumes": [self._volume(req, v) for v in vols]})
        return Response(200, {"volumes": [views.volume_summary(
            v, views.volume_links(req.base_url, req.project, v.id)) for v in vols]})

    def volume_delete(self, req: Request) -> Response:
        self.volume_service.delete(req.params["id"])
        return Response(202)

    def volume_action(self, req: Request) -> Response:
        new_size = req.json()["os-extend"]["new_size"]
        self.volume_service.extend(req.params["id"], _size(new_size))
        return Response(202)

    def _volume(self, req: Request, vol) -> dict:
        links = views.volume_links(req.base_url, req.project, vol.id)
        return views.volume_detail(vol, self.attachment_service.list_attachments(vol.id), links,
                                   req.project, self.volume_service.backstore(vol))


def _page(req: Request, items: list) -> list:
    marker, limit = req.arg("marker"), req.arg("limit")
    if marker:
        ids = [i.id for i in items]
        if marker not in ids:
            raise InvalidInput(f"marker {marker} not found")
        items = items[ids.index(marker) + 1:]
    if limit is not None:                  # at most 9 digits: the query schema
        items = items[:int(limit)]
    return items


def operations(api: Api, metrics: Metrics, strategy: str) -> list[Operation]:
    """Every route of the API: its schema, minimum version and handler.
    ``strategy`` (token, noauth) is shown in the health document."""
    a, v, ATT = "/v3/attachments", "/v3/volumes", mv.ATTACHMENTS
    att_one, att_many = sc.one("attachment", sc.ATTACHMENT_DETAIL), sc.many(
        "attachments", sc.ATTACHMENT_SUMMARY)
    vol_one = sc.one("volume", sc.VOLUME_DETAIL)
    return [
        Operation("versions", "GET", "/v3", lambda r: _versions(r, 200), inline=True,
                  response=sc.VERSIONS),
        Operation("attachment-create", "POST", a, api.attachment_create, ATT,
                  body=sc.attachment_create, response=att_one),
        Operation("attachment-list", "GET", a, api.attachment_list, ATT,
                  query=sc.ATTACHMENT_LIST_QUERY, response=att_many),
        Operation("attachment-list", "GET", a + "/detail", lambda r: api.attachment_list(r, True),
                  ATT, query=sc.ATTACHMENT_LIST_QUERY,
                  response=sc.many("attachments", sc.ATTACHMENT_DETAIL)),
        Operation("attachment-show", "GET", a + "/{id:uuid36}", api.attachment_show, ATT,
                  response=att_one),
        Operation("attachment-update", "PUT", a + "/{id:uuid36}", api.attachment_update, ATT,
                  body=sc.ATTACHMENT_UPDATE, response=att_one),
        Operation("attachment-delete", "DELETE", a + "/{id:uuid36}", api.attachment_delete,
                  ATT, response=att_many),
        Operation("attachment-complete", "POST", a + "/{id:uuid36}/action",
                  api.attachment_action, ATT, body=sc.ATTACHMENT_ACTION, ok=204),
        Operation("session-list", "GET", "/v3/sessions", api.session_list,
                  query=sc.SESSION_LIST_QUERY, response=sc.many("sessions", sc.SESSION)),
        Operation("volume-create", "POST", v, api.volume_create, body=sc.VOLUME_CREATE, ok=202,
                  response=vol_one),
        Operation("volume-list", "GET", v, api.volume_list, query=sc.LIST_QUERY,
                  response=sc.many("volumes", sc.VOLUME_SUMMARY)),
        Operation("volume-list", "GET", v + "/detail", lambda r: api.volume_list(r, True),
                  query=sc.LIST_QUERY, response=sc.many("volumes", sc.VOLUME_DETAIL)),
        Operation("volume-show", "GET", v + "/{id:uuid36}", api.volume_show, response=vol_one),
        Operation("volume-delete", "DELETE", v + "/{id:uuid36}", api.volume_delete, ok=202),
        Operation("volume-extend", "POST", v + "/{id:uuid36}/action", api.volume_action,
                  body=sc.VOLUME_ACTION, ok=202),
        # Read-only, no secrets: served without a token, for probes and scrapers.
        Operation("versions", "GET", "/", lambda r: _versions(r, 300), public=True,
                  inline=True, ok=300, response=sc.VERSIONS),
        Operation("metrics", "GET", "/metrics", lambda r: Response(
            200, raw=metrics.exposition(), content_type=METRICS_TYPE), public=True,
            cache_seconds=1.0),
        Operation("health", "GET", "/healthz", lambda r: Response(
            200 if metrics.ready else 503, {**metrics.health(), "auth_strategy": strategy}),
            public=True, cache_seconds=1.0, response=sc.HEALTH,
            more_responses={503: sc.HEALTH}),
    ]


def build_app(services: Services, auth: Auth, metrics: Metrics | None = None,
              limits: Limits | None = None) -> Application:
    metrics = metrics or Metrics(services.store)
    ops = operations(Api(services.volume_service, services.attachment_service,
                         services.sessions), metrics, auth.strategy)
    document = openapi.document(ops)
    ops.append(Operation("openapi", "GET", "/openapi.json", lambda r: Response(200, document),
                         public=True, inline=True))
    return Application(ops, auth, limits, metrics.observe)
