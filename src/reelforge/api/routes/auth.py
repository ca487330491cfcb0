from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Cookie, Request, Response

from reelforge import errors
from reelforge.api import convert
from reelforge.api.deps import Container, CurrentUser
from reelforge.api.openapi import problems
from reelforge.api.schemas.auth import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ApiKeysPublic,
    PasswordChange,
    RegistrationPublic,
    SessionPublic,
    TokenCreate,
    TokenPublic,
    TokenRefresh,
    UserCreate,
    UserPublic,
)
from reelforge.services.auth import TokenPair

router = APIRouter(tags=["auth"])

# The console's refresh token: HttpOnly (no script reads it), SameSite=Strict (no other site sends it) and sent
# only to the session routes. See docs/decisions.md, "The console's refresh token is an HttpOnly cookie".
SESSION_COOKIE = "reelforge_session"
SESSION_PATH = "/v1/auth/session"


@router.post("/auth/register", status_code=202, response_model=RegistrationPublic)
def register(body: UserCreate, c: Container) -> RegistrationPublic:
    """Ask for an account, which starts with the configured credit grant; then sign in with `POST /v1/auth/token`.

    The answer is the same whether or not the address has an account already (then nothing changes: its
    password stays what it was, and signing in with the one sent here fails), so it never tells who is signed up.
    """
    if not c.settings.auth.allow_registration:
        raise errors.Forbidden("Registration is closed", code="registration_closed")
    return RegistrationPublic(status="accepted", email=c.auth.sign_up(body.email, body.password))


@router.post("/auth/token", response_model=TokenPublic, responses=problems(401))
def token(body: TokenCreate, c: Container) -> TokenPublic:
    """Email + password for a 15-minute access token and a refresh token."""
    pair = c.auth.login(body.email, body.password)
    return TokenPublic(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/auth/refresh", response_model=TokenPublic, responses=problems(401))
def refresh(body: TokenRefresh, c: Container) -> TokenPublic:
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    pair = c.auth.refresh(body.refresh_token)
    return TokenPublic(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


def _session(request: Request, response: Response, c: Container, pair: TokenPair) -> SessionPublic:
    secure = request.url.scheme == "https" or c.settings.public_url.startswith("https://")
    response.set_cookie(SESSION_COOKIE, pair.refresh_token, max_age=c.settings.auth.refresh_ttl_s,
                        path=SESSION_PATH, httponly=True, samesite="strict", secure=secure)
    response.headers["Cache-Control"] = "no-store"
    return SessionPublic(access_token=pair.access_token, expires_in=pair.expires_in)


@router.post("/auth/session", response_model=SessionPublic, responses=problems(401))
def create_session(body: TokenCreate, request: Request, response: Response, c: Container) -> SessionPublic:
    """Sign in a browser: an access token in the answer, the refresh token in an HttpOnly, SameSite=Strict
    cookie that only the `/v1/auth/session` routes receive."""
    return _session(request, response, c, c.auth.login(body.email, body.password))


@router.post("/auth/session/refresh", response_model=SessionPublic, responses=problems(401))
def refresh_session(request: Request, response: Response, c: Container,
                    session: Annotated[str | None, Cookie(alias=SESSION_COOKIE, max_length=512)] = None
                    ) -> SessionPublic:
    """A new access token for the browser session; the cookie's refresh token rotates."""
    if not session:
        raise errors.Unauthorized("No session: sign in first", code="invalid_refresh_token")
    return _session(request, response, c, c.auth.refresh(session))


@router.delete("/auth/session", status_code=204)
def delete_session(c: Container,
                   session: Annotated[str | None, Cookie(alias=SESSION_COOKIE, max_length=512)] = None) -> Response:
    """Sign the browser out: its refresh token stops working and the cookie is removed."""
    if session:
        c.auth.revoke_refresh(session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=SESSION_PATH, httponly=True, samesite="strict")
    return response
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
    new = c.auth.create_api_key(p, body.name, body.scopes)
    return ApiKeyCreated(**convert.api_key(new.key).model_dump(), key=new.secret)


@router.get("/api-keys", response_model=ApiKeysPublic)
def list_keys(p: CurrentUser, c: Container) -> ApiKeysPublic:
    return ApiKeysPublic(data=[convert.api_key(k) for k in c.auth.list_api_keys(p)])


@router.delete("/api-keys/{key_id}", response_model=ApiKeyPublic)
def revoke_key(key_id: str, p: CurrentUser, c: Container) -> ApiKeyPublic:
    return convert.api_key(c.auth.revoke_api_key(p, key_id))
