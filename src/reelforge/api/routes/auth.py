from __future__ import annotations

from fastapi import APIRouter

from reelforge import errors
from reelforge.api import convert
from reelforge.api.deps import Container, CurrentUser
from reelforge.api.schemas.auth import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ApiKeysPublic,
    PasswordChange,
    RegistrationPublic,
    TokenCreate,
    TokenPublic,
    TokenRefresh,
    UserCreate,
    UserPublic,
)

router = APIRouter(tags=["auth"])


@router.post("/auth/register", status_code=202, response_model=RegistrationPublic)
def register(body: UserCreate, c: Container) -> RegistrationPublic:
    """Ask for an account, which starts with the configured credit grant; then sign in with `POST /v1/auth/token`.

    The answer is the same whether or not the address has an account already (then nothing changes: its
    password stays what it was, and signing in with the one sent here fails), so it never tells who is signed up.
    """
    if not c.settings.auth.allow_registration:
        raise errors.Forbidden("Registration is closed", code="registration_closed")
    return RegistrationPublic(status="accepted", email=c.auth.sign_up(body.email, body.password))


@router.post("/auth/token", response_model=TokenPublic)
def token(body: TokenCreate, c: Container) -> TokenPublic:
    """Email + password for a 15-minute access token and a refresh token."""
    pair = c.auth.login(body.email, body.password)
    return TokenPublic(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/auth/refresh", response_model=TokenPublic)
def refresh(body: TokenRefresh, c: Container) -> TokenPublic:
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    pair = c.auth.refresh(body.refresh_token)
    return TokenPublic(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/auth/password", response_model=TokenPublic)
def change_password(body: PasswordChange, p: CurrentUser, c: Container) -> TokenPublic:
    """Replace your password (the current one is required). Every refresh token of the account stops working;
    the answer is a new pair for this session. API keys stay valid."""
    pair = c.auth.change_password(p, body.current_password, body.new_password)
    return TokenPublic(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.get("/auth/me", response_model=UserPublic)
def me(p: CurrentUser, c: Container) -> UserPublic:
    return convert.user(c.auth.me(p))


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
def create_key(body: ApiKeyCreate, p: CurrentUser, c: Container) -> ApiKeyCreated:
    """The key is in this answer only; send it as `Authorization: Bearer rf_...`."""
    new = c.auth.create_api_key(p, body.name)
    return ApiKeyCreated(**convert.api_key(new.key).model_dump(), key=new.secret)


@router.get("/api-keys", response_model=ApiKeysPublic)
def list_keys(p: CurrentUser, c: Container) -> ApiKeysPublic:
    return ApiKeysPublic(data=[convert.api_key(k) for k in c.auth.list_api_keys(p)])


@router.delete("/api-keys/{key_id}", response_model=ApiKeyPublic)
def revoke_key(key_id: str, p: CurrentUser, c: Container) -> ApiKeyPublic:
    return convert.api_key(c.auth.revoke_api_key(p, key_id))
