"""The shop's admin panel (ours; upstream Sock Shop had none): staff change products' price, description
and stock. Scenario 4 ("update product information in the admin panel") starts here.

Routes, all under ``/admin/`` and answered only to a staff session (401 otherwise):
- ``POST /admin/login`` ``{"username", "password"}`` (JSON or form): checked by user's ``/staff/login``; a
  staff login is separate from a customer's (``staff`` in the session, no ``logged_in`` cookie);
- ``POST /admin/logout``, ``GET /admin/me``;
- ``GET /admin/products?page=&size=&tags=`` (catalogue's listing, stock included);
- ``POST /admin/products``, ``PATCH``/``DELETE /admin/products/{id}``: passed to catalogue's admin API with the
  shop's service token (``Authorization: Bearer``), which only the shop's services hold.
The page is ``admin.html``. Every change is logged with the staff member's name.
"""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sockdrill.cluster.admin import SHOP_TOKEN_ENV
from sockdrill.shop.common.http import UpstreamResponse
from sockdrill.shop.common.service import json_response
from sockdrill.shop.frontend.app import ApiError, error_response, seg  # (app.py imports this module in build())

STAFF = "staff"
JSON_TYPE = "application/json; charset=utf-8"


class AdminPanel:
    def __init__(self, fe: Any) -> None:
        self.fe = fe  # the FrontEnd: its sessions, HTTP client and error helpers

    @staticmethod
    def staff(session: Any) -> str:
        name = session.data.get(STAFF)
        if not isinstance(name, str) or not name:
            raise ApiError(401, "Staff login required.")
        return name

    def _relay(self, up: UpstreamResponse) -> web.Response:
        data = up.json()
        if data is None:
            return error_response(502, f"catalogue answered {up.status} without a JSON body")
        return json_response(data, up.status, content_type=JSON_TYPE)

    def _token(self) -> dict[str, str]:
        token = os.environ.get(SHOP_TOKEN_ENV)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def login(self, request: web.Request, session: Any) -> web.StreamResponse:
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            body = await self.fe.body_object(request)
        username = self.fe.string_field(body, "username", "the staff user name")
        password = body.get("password")
        if not isinstance(password, str):
            raise ApiError(400, f'body needs "password" (a string), got {password!r}')
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        up = await self.fe.http.request("user", "GET", "/staff/login", headers={"Authorization": f"Basic {token}"})
        if up.status != 200:
            raise ApiError(401, "Staff login refused.")
        who = up.json() or {}
        session.data[STAFF] = str(who.get("username", username))
        session.dirty = True
        await self.fe.store.save(session)
        self.fe.svc.log.info("staff logged in", extra={"fields": {"kind": "staff_login", "staff": session.data[STAFF]}})
        return json_response({"username": session.data[STAFF], "role": who.get("role", "admin")},
                             content_type=JSON_TYPE)

    async def logout(self, _request: web.Request, session: Any) -> web.StreamResponse:
        if session.data.pop(STAFF, None) is not None:
            session.dirty = True
            await self.fe.store.save(session)
        return json_response({"status": True}, content_type=JSON_TYPE)

    async def me(self, _request: web.Request, session: Any) -> web.StreamResponse:
        return json_response({"username": self.staff(session)}, content_type=JSON_TYPE)

    async def products(self, request: web.Request, session: Any) -> web.StreamResponse:
        self.staff(session)
        query = {k: v for k, v in request.query.items() if k in ("page", "size", "tags", "order")}
        path = "/catalogue" + (f"?{urlencode(query)}" if query else "")
        return self._relay(await self.fe.http.request("catalogue", "GET", path))

    async def create(self, request: web.Request, session: Any) -> web.StreamResponse:
        who = self.staff(session)
        body = await self.fe.body_object(request)
        up = await self.fe.http.request("catalogue", "POST", "/admin/products", json_body=body, headers=self._token())
        if up.status < 300:
            self.fe.svc.log.info("product created by staff", extra={"fields": {"kind": "admin_change", "staff": who}})
        return self._relay(up)

    async def update(self, request: web.Request, session: Any) -> web.StreamResponse:
        who = self.staff(session)
        body = await self.fe.body_object(request)
        sock = request.match_info["id"]
        up = await self.fe.http.request("catalogue", "PATCH", f"/admin/products/{seg(sock)}", json_body=body,
                                        headers=self._token())
        if up.status < 300:
            self.fe.svc.log.info("product changed by staff", extra={"fields": {
                "kind": "admin_change", "staff": who, "product": sock, "fields": sorted(body)}})
        return self._relay(up)

    async def delete(self, request: web.Request, session: Any) -> web.StreamResponse:
        who = self.staff(session)
        sock = request.match_info["id"]
        up = await self.fe.http.request("catalogue", "DELETE", f"/admin/products/{seg(sock)}", headers=self._token())
        if up.status < 300:
            self.fe.svc.log.info("product deleted by staff", extra={"fields": {
                "kind": "admin_change", "staff": who, "product": sock}})
        return self._relay(up)

    def routes(self, router: web.UrlDispatcher, api: Any) -> None:
        router.add_post("/admin/login", api(self.login))
        router.add_post("/admin/logout", api(self.logout))
        router.add_get("/admin/me", api(self.me))
        router.add_get("/admin/products", api(self.products))
        router.add_post("/admin/products", api(self.create))
        router.add_patch("/admin/products/{id}", api(self.update))
        router.add_delete("/admin/products/{id}", api(self.delete))
