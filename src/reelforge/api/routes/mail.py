"""E-mail verification, password reset, sessions and the account's mail settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from reelforge.api.deps import Container, CurrentUser, bearer_token
from reelforge.api.openapi import problems
from reelforge.api.routes.auth import _session
from reelforge.api.schemas.auth import PasswordChange, SessionPublic
from reelforge.api.schemas.common import iso
from reelforge.api.schemas.mail import (
    Accepted,
    EmailVerified,
    LinkTokenUse,
    MailPublic,
    MailSettingsPublic,
    MailSettingsUpdate,
    MailsPublic,
    PasswordForgot,
    PasswordReset,
    SessionInfo,
    SessionsEnded,
    SignInSessionsPublic,
)

router = APIRouter(tags=["auth"])


def _settings(d: dict[str, object]) -> MailSettingsPublic:
    return MailSettingsPublic(**{**d, "verified_at": iso(d["verified_at"])})  # type: ignore[arg-type]


@router.post("/auth/verify", response_model=EmailVerified, responses=problems(400, 410))
def verify(body: LinkTokenUse, c: Container) -> EmailVerified:
    """Use the link of a verification mail: the account's address is verified. A link works once."""
    return EmailVerified(status="verified", email=c.mail.verify_email(body.token))


@router.post("/auth/verify/resend", status_code=202, response_model=Accepted, responses=problems(409, 429))
def resend_verification(p: CurrentUser, c: Container) -> Accepted:
    """Mail a new verification link to your address."""
    c.mail.resend_verification(p)
    return Accepted(status="accepted")


@router.post("/auth/password/forgot", status_code=202, response_model=Accepted)
def forgot_password(body: PasswordForgot, c: Container) -> Accepted:
    """Mail a password-reset link to this address if it has an account. The answer is the same, and takes as
    long, whether or not it has one."""
    c.mail.forgot_password(body.email)
    return Accepted(status="accepted")


@router.post("/auth/password/reset", status_code=204, responses=problems(400, 410))
def reset_password(body: PasswordReset, c: Container) -> Response:
    """Use the link of a reset mail to set a new password. Every session of the account is signed out."""
    c.mail.reset_password(body.token, body.new_password)
    return Response(status_code=204)


@router.post("/auth/session/password", response_model=SessionPublic)
def change_session_password(body: PasswordChange, request: Request, response: Response, p: CurrentUser,
                            c: Container) -> SessionPublic:
    """`POST /v1/auth/password` for a browser session: every other session is signed out, and this one goes on
    with a new refresh token in its cookie."""
    return _session(request, response, c, c.auth.change_password(p, body.current_password, body.new_password))


@router.get("/auth/sessions", response_model=SignInSessionsPublic)
def list_sessions(request: Request, p: CurrentUser, c: Container) -> SignInSessionsPublic:
    """Your signed-in sessions (one per sign-in, until signed out or expired)."""
    current = c.auth.session_of(bearer_token(request.headers.get("authorization", "")) or "")
    return SignInSessionsPublic(data=[
        SessionInfo(id=sid, started_at=iso(started), last_active_at=iso(last), expires_at=iso(expires),
                    current=sid == current)
        for sid, started, last, expires in c.auth.sessions(p)])


@router.delete("/auth/sessions/{session_id}", status_code=204, responses=problems(404))
def end_session(session_id: str, p: CurrentUser, c: Container) -> Response:
    """Sign one of your sessions out: its refresh token and its access tokens stop working."""
    c.auth.end_session(p, session_id)
    return Response(status_code=204)


@router.post("/auth/sessions/sign-out-others", response_model=SessionsEnded)
def end_other_sessions(request: Request, p: CurrentUser, c: Container) -> SessionsEnded:
    """Sign out every session but the one of this request (called with an API key: every session)."""
    current = c.auth.session_of(bearer_token(request.headers.get("authorization", "")) or "")
    return SessionsEnded(ended=c.auth.end_other_sessions(p, current))


@router.get("/account/mail", response_model=MailSettingsPublic)
def mail_settings(p: CurrentUser, c: Container) -> MailSettingsPublic:
    """Your address, whether it is verified, and which mails you get."""
    return _settings(c.mail.status(p))


@router.patch("/account/mail", response_model=MailSettingsPublic)
def update_mail_settings(body: MailSettingsUpdate, p: CurrentUser, c: Container) -> MailSettingsPublic:
    """Turn the job-finished mail (off by default) or the credits-low mail on or off."""
    return _settings(c.mail.set_preferences(p, job_finished=body.job_finished, credits_low=body.credits_low))


@router.get("/account/mails", response_model=MailsPublic)
def list_mails(p: CurrentUser, c: Container, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> MailsPublic:
    """The mails sent or queued to you, newest first (their bodies are not kept)."""
    return MailsPublic(data=[
        MailPublic(id=m.id, kind=m.kind, to=m.to_addr, subject=m.subject, status=m.status, attempts=m.attempts,
                   last_error=m.last_error, created_at=iso(m.created_at), sent_at=iso(m.sent_at))
        for m in c.mail.mails(p, limit)])


