"""Schemas of the e-mail flows (verification, password reset), sessions and the account's mail settings."""

from __future__ import annotations

from pydantic import Field

from reelforge.api.schemas.common import Public, Strict


class LinkTokenUse(Strict):
    token: str = Field(min_length=1, max_length=256, description="The token of the link in the mail.")


class EmailVerified(Public):
    status: str = Field(examples=["verified"])
    email: str


class PasswordForgot(Strict):
    email: str = Field(max_length=320, examples=["ada@example.com"])


class PasswordReset(Strict):
    token: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=1024)


class Accepted(Public):
    """The same answer whatever happened behind it."""

    status: str = Field(examples=["accepted"])


class MailSettingsPublic(Public):
    email: str
    verified: bool
    verified_at: str | None
    job_finished: bool = Field(description="A mail when one of your jobs succeeds or fails (off unless turned on).")
    credits_low: bool = Field(description="A mail when your balance falls below the threshold (once per fall).")
    credits_low_threshold: int
    provider: str = Field(description="The server's mail provider; `none` sends nothing.")


class MailSettingsUpdate(Strict):
    job_finished: bool | None = None
    credits_low: bool | None = None


class MailPublic(Public):
    id: str
    kind: str
    to: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: str | None
    sent_at: str | None


class MailsPublic(Public):
    data: list[MailPublic]


class SessionInfo(Public):
    id: str
    started_at: str | None
    last_active_at: str | None = Field(description="When its refresh token last rotated (or was issued).")
    expires_at: str | None
    current: bool = Field(description="The session of the access token of this request.")


class SignInSessionsPublic(Public):
    data: list[SessionInfo]


class SessionsEnded(Public):
    ended: int
