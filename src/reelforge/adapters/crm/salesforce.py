"""Salesforce REST: an OAuth 2.0 access token (client credentials flow of a connected app) and upserts by external id.

`PATCH <instance_url>/services/data/<version>/sobjects/<object>/<external id field>/<value>` with a JSON body
creates the record (201) or updates the one holding that external id (200 or 204, by API version): repeating it
is harmless, which is what at-least-once delivery from the outbox needs. A purchase record points at its contact
through the contact's external id (`"<lookup relationship>": {"<external id field>": <account id>}`), so no
Salesforce id is ever stored here. An expired or revoked access token (401) is replaced once per request.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import httpx

from reelforge import errors


class CrmError(errors.ReelforgeError):
    status, code, title, retryable = 502, "crm_error", "The CRM refused or failed", True

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class SalesforceClient:
    """The `CrmClient` port on Salesforce's REST API."""

    def __init__(self, *, login_url: str, client_id: str, client_secret: str, api_version: str = "v60.0",
                 contact_external_id: str = "Reelforge_Id__c", purchase_object: str = "Reelforge_Purchase__c",
                 purchase_external_id: str = "Reelforge_Purchase_Id__c", contact_lookup: str = "Contact__c",
                 timeout_s: float = 20.0) -> None:
        self.login_url = login_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_version = api_version
        self.contact_external_id = contact_external_id
        self.purchase_object = purchase_object
        self.purchase_external_id = purchase_external_id
        self.contact_lookup = contact_lookup
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token: tuple[str, str] | None = None  # (access token, instance URL)
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _authenticate(self, stale: str | None) -> tuple[str, str]:
        with self._lock:
            if self._token is not None and self._token[0] != stale:
                return self._token
            try:
                r = self._http.post(f"{self.login_url}/services/oauth2/token", data={
                    "grant_type": "client_credentials", "client_id": self.client_id,
                    "client_secret": self.client_secret})
            except httpx.HTTPError as exc:
                raise CrmError(f"Salesforce token endpoint unreachable: {type(exc).__name__}") from exc
            doc = _json(r)
            if r.status_code != 200 or not doc.get("access_token") or not doc.get("instance_url"):
                raise CrmError(f"Salesforce refused the token request ({r.status_code}: "
                               f"{str(doc.get('error') or '')[:100]})", status_code=r.status_code)
            self._token = (str(doc["access_token"]), str(doc["instance_url"]).rstrip("/"))
            return self._token

    def _upsert(self, sobject: str, field: str, value: str, body: dict[str, Any]) -> str:
        token: str | None = None
        for _ in range(2):
            token, instance = self._authenticate(token)
            url = (f"{instance}/services/data/{self.api_version}/sobjects/{sobject}/{field}/"
                   f"{quote(value, safe='')}")
            try:
                r = self._http.patch(url, json=body, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                raise CrmError(f"Salesforce unreachable: {type(exc).__name__}") from exc
            if r.status_code == 401:
                continue  # the token expired or was revoked: one new token, one more try
            if r.status_code == 201:
                return "created"
            if r.status_code in (200, 204):
                doc = _json(r) if r.status_code == 200 else {}
                return "created" if doc.get("created") is True else "updated"
            raise CrmError(f"Salesforce refused the {sobject} upsert ({r.status_code}: {_error_code(r)})",
                           status_code=r.status_code)
        raise CrmError("Salesforce refused a fresh access token (401)", status_code=401)

    def upsert_contact(self, *, account_id: str, email: str, fields: dict[str, Any]) -> str:
        local = email.split("@", 1)[0] or email
        body = {"Email": email, "LastName": local[:80], **fields}
        return self._upsert("Contact", self.contact_external_id, account_id, body)

    def upsert_purchase(self, *, purchase_id: str, account_id: str, fields: dict[str, Any]) -> str:
        body = {**fields, self.contact_lookup.removesuffix("__c") + "__r": {self.contact_external_id: account_id}}
        return self._upsert(self.purchase_object, self.purchase_external_id, purchase_id, body)


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _error_code(r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return ""
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return str(doc[0].get("errorCode", ""))[:100]
    return ""
