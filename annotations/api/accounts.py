"""Accounts API: token for scripts, who am I, study members, a study's systems, invitations and the audit log.

Permissions come from annotations.permissions only. A study the caller may not see answers 404, never 403,
so slugs reveal nothing.
"""

from datetime import timedelta

from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.http import Http404
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.authentication import ClientAddressScopedThrottle
from annotations.api.errors import api_validation_error
from annotations.api.studies import api_study
from annotations.models import ApiToken, Invitation, Profile, StudyMembership
from annotations.permissions import is_admin
from annotations.services import accounts as account_services

# Token ---------------------------------------------------------------------------------------------------------


class TokenInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=512, trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="api")


class TokenOutput(serializers.Serializer):
    token = serializers.CharField(help_text="The key, shown once: send it as `Authorization: Token <key>`.")
    prefix = serializers.CharField()
    expires_at = serializers.DateTimeField()


class TokenObtainApi(APIView):
    """Exchange a username and password for a new API token (send it as `Authorization: Token <key>`).

    Each call issues a new token that expires after API_TOKEN_DAYS; only its SHA-256 is stored.
    """

    # No session: this endpoint only takes credentials, so it needs no CSRF token and grants no cookie.
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [ClientAddressScopedThrottle]
    throttle_scope = "auth"

    @extend_schema(request=TokenInput, responses={200: TokenOutput}, auth=[])
    def post(self, request: Request) -> Response:
        data = TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        # authenticate() with the Django request lets axes count failures and lock out, and fires the audit signal.
        user = authenticate(
            request._request, username=data.validated_data["username"], password=data.validated_data["password"]
        )
        if user is None or not user.is_active:
            raise ValidationError({"non_field_errors": ["Unable to log in with these credentials."]})
        token, key = account_services.api_token_issue(user=user, name=data.validated_data["name"])
        return Response({"token": key, "prefix": token.prefix, "expires_at": token.expires_at})


class TokenRevokeApi(APIView):
    """Revoke the token sending this request (from a browser session: all your tokens); it is refused after."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            account_services.api_token_revoke(token=request.auth, actor=request.user)
        else:
            account_services.api_tokens_revoke_all(user=request.user, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiTokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class ApiTokenCreatedOutput(ApiTokenOutput):
    token = serializers.CharField(help_text="The key, shown once.")


class ApiTokenInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    days = serializers.IntegerField(required=False, min_value=1, max_value=366)


class ApiTokenListApi(ListAPIView):
    """Your API tokens (never their keys). POST issues a new one; its key is in this response only."""

    serializer_class = ApiTokenOutput

    def get_queryset(self):
        return account_services.api_tokens_of(user=self.request.user)

    @extend_schema(request=ApiTokenInput, responses={201: ApiTokenCreatedOutput})
    def post(self, request: Request) -> Response:
        data = ApiTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        days = data.validated_data.get("days")
        token, key = account_services.api_token_issue(
            user=request.user, name=data.validated_data["name"], valid_for=timedelta(days=days) if days else None
        )
        return Response({**ApiTokenOutput(token).data, "token": key}, status=status.HTTP_201_CREATED)


class ApiTokenApi(APIView):
    """Revoke one of your tokens by id."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        token = account_services.api_tokens_of(user=request.user).filter(pk=token_id).first()
        if token is None:
            raise Http404
        account_services.api_token_revoke(token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Me ------------------------------------------------------------------------------------------------------------


class MembershipOutput(serializers.Serializer):
    study = serializers.CharField(source="study.slug")
    title = serializers.CharField(source="study.title")
    role = serializers.CharField()


class MeOutput(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    role = serializers.CharField(allow_null=True)
    is_admin = serializers.BooleanField()
    studies = MembershipOutput(many=True)


class MeApi(APIView):
    """The calling account: its platform role and the studies it belongs to."""

    @extend_schema(responses=MeOutput)
    def get(self, request: Request) -> Response:
        user = request.user
        profile = getattr(user, "profile", None)
        memberships = StudyMembership.objects.filter(user=user).select_related("study").order_by("study__slug")
        return Response(
            MeOutput(
                {
                    "username": user.get_username(),
                    "email": user.email,
                    "role": profile.role if profile else None,
                    "is_admin": bool(is_admin(user)),
                    "studies": memberships,
                }
            ).data
        )


# Members -------------------------------------------------------------------------------------------------------


class MemberOutput(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=StudyMembership.Role.choices)
    quota = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class MemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=StudyMembership.Role.choices)
    quota = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)


class StudyMemberListApi(ListAPIView):
    """Members of a study (owners, researchers, clinicians). Owners and admins add members or change roles."""

    serializer_class = MemberOutput

    def get_queryset(self):
        study = api_study(self.request, self.kwargs["slug"], "annotations.view_members")
        return StudyMembership.objects.filter(study=study).select_related("user").order_by("role", "user__username")

    @extend_schema(request=MemberInput, responses={200: MemberOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.view_members")
        if not request.user.has_perm("annotations.manage_members", study):
            raise PermissionDenied
        data = MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            membership = account_services.study_member_add(
                study=study,
                username=data.validated_data["username"],
                role=data.validated_data["role"],
                quota=data.validated_data.get("quota"),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(MemberOutput(membership).data)


class MemberQuotaInput(serializers.Serializer):
    quota = serializers.IntegerField(
        allow_null=True, min_value=1, max_value=1_000_000, help_text="Pairs to rate here; null for none."
    )


class StudyMemberApi(APIView):
    """One member of a study. PATCH sets a clinician's quota; DELETE removes the member (owners and admins): their
    pairs in hand go back to the pool, their submitted ratings are kept."""

    def _member(self, request: Request, slug: str, username: str):
        study = _study_managed(request, slug)
        user = get_user_model().objects.filter(username=username, study_memberships__study=study).first()
        if user is None:
            raise Http404
        return study, user

    @extend_schema(request=MemberQuotaInput, responses={200: MemberOutput})
    def patch(self, request: Request, slug: str, username: str) -> Response:
        study, user = self._member(request, slug, username)
        data = MemberQuotaInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            membership = account_services.membership_quota_set(
                study=study, user=user, quota=data.validated_data["quota"], actor=request.user
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(MemberOutput(membership).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, slug: str, username: str) -> Response:
        study, user = self._member(request, slug, username)
        try:
            account_services.study_member_remove(study=study, user=user, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# Systems (researchers only: clinicians never learn which systems exist) ----------------------------------------


class SystemOutput(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    responses = serializers.IntegerField(source="response_count")
    created_at = serializers.DateTimeField()


class StudySystemListApi(ListAPIView):
    """The systems whose responses a study compares."""

    serializer_class = SystemOutput

    def get_queryset(self):
        study = api_study(self.request, self.kwargs["slug"], "annotations.view_systems")
        return study.systems.annotate(response_count=Count("responses")).order_by("name")


# Accounts and invitations (admins) ----------------------------------------------------------------------------


class AccountOutput(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    role = serializers.CharField(source="profile.role", allow_null=True, default=None)
    is_active = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class AccountCreateInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Profile.Role.choices)
    password = serializers.CharField(
        required=False, max_length=512, trim_whitespace=False, write_only=True, style={"input_type": "password"}
    )


class _AdminOnly:
    def check_admin(self, request: Request) -> None:
        if not request.user.has_perm("annotations.manage_accounts"):
            raise PermissionDenied


class AccountListApi(_AdminOnly, ListAPIView):
    """All accounts (admins). POST creates one; without a password it cannot log in until one is set."""

    serializer_class = AccountOutput

    def get_queryset(self):
        self.check_admin(self.request)
        return get_user_model().objects.select_related("profile").order_by("username")

    @extend_schema(request=AccountCreateInput, responses={201: AccountOutput})
    def post(self, request: Request) -> Response:
        self.check_admin(request)
        data = AccountCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = account_services.account_create(
                username=data.validated_data["username"],
                email=data.validated_data["email"],
                role=data.validated_data["role"],
                password=data.validated_data.get("password"),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(AccountOutput(user).data, status=status.HTTP_201_CREATED)


class RoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Profile.Role.choices)


class AccountRoleApi(_AdminOnly, APIView):
    """Change an account's platform role (admins)."""

    @extend_schema(request=RoleInput, responses={200: AccountOutput})
    def post(self, request: Request, username: str) -> Response:
        self.check_admin(request)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise Http404
        data = RoleInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            account_services.role_change(user=user, role=data.validated_data["role"], actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        user.refresh_from_db()
        return Response(AccountOutput(user).data)


class InvitationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.CharField()
    study = serializers.CharField(source="study.slug", allow_null=True, default=None)
    state = serializers.SerializerMethodField(help_text="pending, accepted, expired or revoked.")
    quota = serializers.IntegerField(
        allow_null=True, help_text="Pairs a clinician is asked to rate; carried into the membership."
    )
    sent_count = serializers.IntegerField(help_text="How many times the link was sent (1 + resends).")
    last_sent_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_state(self, invitation: Invitation) -> str:
        return account_services.invitation_state(invitation)


class InvitationCreatedOutput(InvitationOutput):
    url = serializers.CharField(help_text="The invitation link to send to the invitee.")
    emailed = serializers.BooleanField(help_text="True when this installation emailed the link itself.")


class InvitationInput(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Profile.Role.choices)
    study = serializers.SlugField(required=False, allow_blank=True, max_length=80)
    days = serializers.IntegerField(required=False, min_value=1, max_value=90, default=7)
    quota = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)


def _invitation_created(request: Request, invitation: Invitation, code: int = status.HTTP_201_CREATED) -> Response:
    url = request.build_absolute_uri(reverse("invitation-accept", args=[invitation.token]))
    emailed = account_services.invitation_email_send(invitation=invitation, link=url)
    return Response({**InvitationOutput(invitation).data, "url": url, "emailed": emailed}, status=code)


class InvitationListApi(_AdminOnly, ListAPIView):
    """Invitations (admins). POST makes an invitation link that expires; the link is shown once, here."""

    serializer_class = InvitationOutput

    def get_queryset(self):
        self.check_admin(self.request)
        return Invitation.objects.select_related("study").order_by("-created_at")

    @extend_schema(request=InvitationInput, responses={201: InvitationCreatedOutput})
    def post(self, request: Request) -> Response:
        self.check_admin(request)
        data = InvitationInput(data=request.data)
        data.is_valid(raise_exception=True)
        study = None
        if data.validated_data.get("study"):
            study = api_study(request, data.validated_data["study"])
        try:
            invitation = account_services.invitation_create(
                email=data.validated_data["email"],
                role=data.validated_data["role"],
                study=study,
                valid_for=timedelta(days=data.validated_data["days"]),
                quota=data.validated_data.get("quota"),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return _invitation_created(request, invitation)


# A study's people: invitations, resend, revoke, quota (owners and admins manage; its researchers read) -------


class StudyInvitationInput(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=[Profile.Role.CLINICIAN, Profile.Role.RESEARCHER])
    days = serializers.IntegerField(required=False, min_value=1, max_value=90, default=7)
    quota = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1_000_000, help_text="Clinicians only."
    )


def _study_managed(request: Request, slug: str):
    study = api_study(request, slug, "annotations.view_members")
    if not request.user.has_perm("annotations.manage_members", study):
        raise PermissionDenied
    return study


class StudyInvitationListApi(ListAPIView):
    """A study's invitations with their state (pending, accepted, expired, revoked), newest first.

    POST invites a clinician or researcher into the study (owners and admins): the response carries the link to
    send; it is also emailed when the installation has an email backend."""

    serializer_class = InvitationOutput

    def get_queryset(self):
        study = api_study(self.request, self.kwargs["slug"], "annotations.view_members")
        return account_services.invitations_of_study(study=study).select_related("study")

    @extend_schema(request=StudyInvitationInput, responses={201: InvitationCreatedOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = _study_managed(request, slug)
        data = StudyInvitationInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            invitation = account_services.invitation_create(
                email=data.validated_data["email"],
                role=data.validated_data["role"],
                study=study,
                valid_for=timedelta(days=data.validated_data["days"]),
                quota=data.validated_data.get("quota"),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return _invitation_created(request, invitation)


def _study_invitation(study, invitation_id: int) -> Invitation:
    invitation = Invitation.objects.filter(pk=invitation_id, study=study).select_related("study").first()
    if invitation is None:
        raise Http404
    return invitation


class StudyInvitationResendApi(APIView):
    """Send an invitation again: a new expiry from now, one more in `sent_count`; the link stays the same.
    Refused (400) once it is accepted or revoked."""

    @extend_schema(request=None, responses={200: InvitationCreatedOutput})
    def post(self, request: Request, slug: str, invitation_id: int) -> Response:
        study = _study_managed(request, slug)
        invitation = _study_invitation(study, invitation_id)
        try:
            invitation = account_services.invitation_resend(invitation=invitation, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return _invitation_created(request, invitation, code=status.HTTP_200_OK)


class StudyInvitationRevokeApi(APIView):
    """Withdraw an invitation: its link stops working at once (accepting it is refused with a clear message).
    Refused (400) once accepted; revoking twice changes nothing."""

    @extend_schema(request=None, responses={200: InvitationOutput})
    def post(self, request: Request, slug: str, invitation_id: int) -> Response:
        study = _study_managed(request, slug)
        invitation = _study_invitation(study, invitation_id)
        try:
            invitation = account_services.invitation_revoke(invitation=invitation, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(InvitationOutput(invitation).data)


# Audit log (admins) -------------------------------------------------------------------------------------------


class AuditEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_label")
    action = serializers.CharField()
    study = serializers.SlugField(source="study.slug", allow_null=True, default=None)
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    data = serializers.JSONField()


class AuditFilterInput(serializers.Serializer):
    action = serializers.CharField(required=False, allow_blank=True, max_length=64)
    study = serializers.CharField(required=False, allow_blank=True, max_length=80)
    actor = serializers.CharField(required=False, allow_blank=True, max_length=200)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class AuditEventListApi(_AdminOnly, ListAPIView):
    """The append-only audit log, newest first (admins)."""

    serializer_class = AuditEventOutput

    def get_queryset(self):
        self.check_admin(self.request)
        filters = AuditFilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        return account_services.audit_events_filtered(
            action=values.get("action", ""),
            study_slug=values.get("study", ""),
            actor=values.get("actor", ""),
            since=values.get("since"),
            until=values.get("until"),
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("action", str, description="Action prefix, e.g. `auth.` or `membership.set`."),
            OpenApiParameter("study", str, description="Study slug."),
            OpenApiParameter("actor", str, description="Username of the actor."),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
        ]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


urlpatterns = [
    path("auth/token", TokenObtainApi.as_view(), name="api-auth-token"),
    path("me", MeApi.as_view(), name="api-me"),
    path("me/token", TokenRevokeApi.as_view(), name="api-me-token"),
    path("me/tokens", ApiTokenListApi.as_view(), name="api-me-tokens"),
    path("me/tokens/<int:token_id>", ApiTokenApi.as_view(), name="api-me-token-detail"),
    path("studies/<slug:slug>/members", StudyMemberListApi.as_view(), name="api-study-members"),
    path("studies/<slug:slug>/members/<str:username>", StudyMemberApi.as_view(), name="api-study-member"),
    path("studies/<slug:slug>/systems", StudySystemListApi.as_view(), name="api-study-systems"),
    path("studies/<slug:slug>/invitations", StudyInvitationListApi.as_view(), name="api-study-invitations"),
    path(
        "studies/<slug:slug>/invitations/<int:invitation_id>/resend",
        StudyInvitationResendApi.as_view(),
        name="api-study-invitation-resend",
    ),
    path(
        "studies/<slug:slug>/invitations/<int:invitation_id>/revoke",
        StudyInvitationRevokeApi.as_view(),
        name="api-study-invitation-revoke",
    ),
    path("accounts", AccountListApi.as_view(), name="api-accounts"),
    path("accounts/<str:username>/role", AccountRoleApi.as_view(), name="api-account-role"),
    path("invitations", InvitationListApi.as_view(), name="api-invitations"),
    path("audit-events", AuditEventListApi.as_view(), name="api-audit-events"),
]
