"""API authentication by hashed, expiring tokens (`Authorization: Token <key>`), and throttles that identify the
client as the lockout does."""

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from annotations.lockout import client_address
from annotations.models import ApiToken
from annotations.services import accounts as account_services


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` against ApiToken: looked up by the key's SHA-256; expired or revoked is refused.

    DRF's header parsing and its 401 with `WWW-Authenticate: Token` are kept; only the lookup changes.
    """

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, ApiToken]:
        token = account_services.api_token_authenticate(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "annotations.api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: a key from `POST /api/v1/auth/token` or the My account page.",
        }


class ClientAddressScopedThrottle(ScopedRateThrottle):
    """ScopedRateThrottle keyed on annotations.lockout.client_address: a forged X-Forwarded-For is not a new client."""

    def get_ident(self, request: Request) -> str:
        return client_address(request._request)
