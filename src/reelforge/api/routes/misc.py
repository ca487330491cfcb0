from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from reelforge.api import convert
from reelforge.api.deps import Admin, Container, CurrentUser
from reelforge.api.schemas.auth import UserPublic, UsersPublic, UserUpdate
from reelforge.api.schemas.common import MAX_ID
from reelforge.api.schemas.misc import (
    CreditEntryPublic,
    CreditGrant,
    CreditsPublic,
    DeliveriesPublic,
    ModelsPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhooksPublic,
)
from reelforge.domain.types import Role

router = APIRouter()


@router.get("/credits", response_model=CreditsPublic, tags=["credits"])
def credits(p: CurrentUser, c: Container, limit: Annotated[int, Query(ge=1, le=500)] = 100,
            before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> CreditsPublic:
    """Balance and ledger, newest first."""
    return CreditsPublic(balance=c.credits.balance(p),
                         ledger=[convert.credit(e) for e in c.credits.ledger(p, limit=limit, before=before)])


@router.post("/admin/credits", status_code=201, response_model=CreditEntryPublic, tags=["admin"])
def grant_credits(body: CreditGrant, admin: Admin, c: Container) -> CreditEntryPublic:
    return convert.credit(c.credits.grant(admin, body.account_id, body.amount, body.note))


@router.get("/admin/users", response_model=UsersPublic, tags=["admin"])
def list_users(admin: Admin, c: Container, limit: Annotated[int, Query(ge=1, le=500)] = 100,
               offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> UsersPublic:
    return UsersPublic(data=[convert.user(u) for u in c.auth.list_users(limit=limit, offset=offset)])


@router.patch("/admin/users/{user_id}", response_model=UserPublic, tags=["admin"])
def update_user(user_id: str, body: UserUpdate, admin: Admin, c: Container) -> UserPublic:
    return convert.user(c.auth.set_user(user_id, role=Role(body.role) if body.role else None, disabled=body.disabled,
                                        actor=admin))


@router.get("/models", response_model=ModelsPublic, tags=["models"])
def models(p: CurrentUser, c: Container, task: Annotated[str | None, Query(max_length=64)] = None) -> ModelsPublic:
    """Every model adapter by task, whether it can run here, and why not. Local paths (where the weights are
    looked for) are shown to admins only."""
    return ModelsPublic(data=[convert.model(m, admin=p.is_admin) for m in c.models.list(task)])


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, tags=["webhooks"])
def create_webhook(body: WebhookCreate, p: CurrentUser, c: Container) -> WebhookCreated:
    """Subscribe a URL to events; deliveries are signed with the secret in this answer."""
    hook = c.events.create_webhook(p, body.url, body.event_types, body.description)
    return WebhookCreated(**convert.webhook(hook).model_dump(), secret=hook.secret)


@router.get("/webhooks", response_model=WebhooksPublic, tags=["webhooks"])
def list_webhooks(p: CurrentUser, c: Container) -> WebhooksPublic:
    return WebhooksPublic(data=[convert.webhook(w) for w in c.events.list_webhooks(p)])


@router.get("/webhooks/signing-secret", tags=["webhooks"])
def signing_secret(p: CurrentUser, c: Container) -> dict[str, str]:
    """The secret that signs deliveries to a job's callback_url."""
    return {"secret": c.events.signing_secret(p)}


@router.get("/webhooks/{hook_id}", response_model=WebhookPublic, tags=["webhooks"])
def get_webhook(hook_id: str, p: CurrentUser, c: Container) -> WebhookPublic:
    return convert.webhook(c.events.get_webhook(p, hook_id))


@router.delete("/webhooks/{hook_id}", status_code=204, tags=["webhooks"])
def delete_webhook(hook_id: str, p: CurrentUser, c: Container) -> Response:
    c.events.delete_webhook(p, hook_id)
    return Response(status_code=204)


@router.post("/webhooks/{hook_id}/test", status_code=202, tags=["webhooks"])
def test_webhook(hook_id: str, p: CurrentUser, c: Container) -> dict[str, str]:
    ev = c.events.test_webhook(p, hook_id)
    return {"event_id": ev.id, "status": "queued"}


@router.get("/webhooks/{hook_id}/deliveries", response_model=DeliveriesPublic, tags=["webhooks"])
def deliveries(hook_id: str, p: CurrentUser, c: Container) -> DeliveriesPublic:
    return DeliveriesPublic(data=[convert.delivery(d) for d in c.events.deliveries(p, hook_id)])
