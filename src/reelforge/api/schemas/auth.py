from __future__ import annotations

from typing import Annotated

from pydantic import Field

from reelforge.api.schemas.common import Public, Strict


class UserCreate(Strict):
    email: str = Field(max_length=320, examples=["ada@example.com"])
    password: str = Field(min_length=8, max_length=1024)


class RegistrationPublic(Public):
    """The same for an address that has an account already as for a new one: registration never tells."""

    status: str = Field(examples=["accepted"])
    email: str = Field(description="The address as it was read (trimmed, lowercased): sign in with it.")


class TokenCreate(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class PasswordChange(Strict):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class TokenRefresh(Strict):
    refresh_token: str = Field(max_length=512)


class TokenPublic(Public):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class SessionPublic(Public):
    """A browser session's access token; its refresh token is in an HttpOnly cookie, out of the page's reach."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserPublic(Public):
    id: str
    email: str
    role: str
    disabled: bool
    credits: int
    created_at: str | None


class UsersPublic(Public):
    data: list[UserPublic]


class UserUpdate(Strict):
    role: str | None = Field(default=None, pattern="^(user|admin)$")
    disabled: bool | None = None


class ApiKeyCreate(Strict):
    name: str = Field(default="key", min_length=1, max_length=200)
    scopes: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=32, examples=[["read"], ["write", "app:<application>"]],
        description="Limit the key: `read` (safe methods), `write` (every method), `app:<application>` (that "
                    "application's routes and job kinds, besides the core's). Omitted: full access.")


class ApiKeyPublic(Public):
    id: str
    name: str
    prefix: str
    scopes: list[str] | None = Field(default=None, description="The key's scopes; null: full access.")
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="Shown once; store it now.")


class ApiKeysPublic(Public):
    data: list[ApiKeyPublic]
