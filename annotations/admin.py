from django.contrib import admin

from annotations import models as m


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted here: these rows change only through services, which check
    the change and write its audit row in the same transaction. The admin would do neither."""

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


class StudyCriterionInline(admin.TabularInline):
    model = m.StudyCriterion
    extra = 0


class MembershipInline(admin.TabularInline):
    model = m.StudyMembership
    extra = 0


@admin.register(m.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "status", "scale_points", "overlap_k", "created_at"]
    list_filter = ["status", "scale_points"]
    search_fields = ["slug", "title"]
    inlines = [StudyCriterionInline, MembershipInline]


@admin.register(m.Criterion)
class CriterionAdmin(admin.ModelAdmin):
    list_display = ["key", "version", "title", "is_overall"]


@admin.register(m.System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ["name", "study", "training_job"]
    list_filter = ["study"]


@admin.register(m.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["external_id", "study", "created_at"]
    list_filter = ["study"]
    search_fields = ["external_id"]


@admin.register(m.Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["external_id", "study", "system", "excluded"]
    list_filter = ["study", "system", "excluded"]
    search_fields = ["external_id"]
    raw_id_fields = ["prompt"]


@admin.register(m.Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "prompt", "response_first", "response_second", "is_gold", "excluded"]
    list_filter = ["study", "is_gold", "excluded"]
    raw_id_fields = ["prompt", "response_first", "response_second"]


@admin.register(m.ScreeningHit)
class ScreeningHitAdmin(admin.ModelAdmin):
    list_display = ["response", "term", "resolution"]
    list_filter = ["resolution"]


@admin.register(m.Rater)
class RaterAdmin(admin.ModelAdmin):
    list_display = ["label", "kind", "user"]
    list_filter = ["kind"]


@admin.register(m.Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "study", "rater", "status", "purpose", "left_is_first", "submitted_at"]
    list_filter = ["study", "status", "purpose"]
    raw_id_fields = ["comparison", "rater"]


@admin.register(m.Rating)
class RatingAdmin(ReadOnlyAdmin):
    list_display = ["assignment", "criterion", "value", "revision", "updated_at"]
    raw_id_fields = ["assignment"]


@admin.register(m.Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ["rater", "kind"]


@admin.register(m.Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = ["judge", "comparison", "criterion", "value"]
    raw_id_fields = ["comparison"]


@admin.register(m.JudgeRun)
class JudgeRunAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "study", "judge", "status", "created_at"]
    list_filter = ["status"]


@admin.register(m.JudgmentCall)
class JudgmentCallAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "comparison", "criterion_key", "status", "created_at"]
    list_filter = ["status"]


@admin.register(m.GenerationRun)
class GenerationRunAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "study", "status", "created_at"]
    list_filter = ["status"]


@admin.register(m.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "created_at", "action", "actor_label", "study", "object_type", "object_id"]
    list_filter = ["action"]
    search_fields = ["actor_label", "action"]


@admin.register(m.PreferenceExport)
class PreferenceExportAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "study", "format", "status", "created_at"]


@admin.register(m.TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "study", "kind", "status", "step", "total_steps", "attempts"]


@admin.register(m.ReportSnapshot)
class ReportSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["study", "fingerprint", "status", "computed_at"]


@admin.register(m.Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "role", "licence_type", "years_of_practice"]
    # Role changes go through services.accounts.role_change (checked and audited), not the admin form.
    readonly_fields = ["role"]


@admin.register(m.Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "role", "study", "expires_at", "accepted_at"]
