from annotations.models.accounts import ApiToken, Invitation, PasswordResetLink, Profile
from annotations.models.audit import AuditEvent
from annotations.models.content import Comparison, Prompt, Response, ScreeningHit, System
from annotations.models.jobs import JobStatus, PreferenceExport, ReportSnapshot, Sweep, TrainingJob, TrainingMetric
from annotations.models.judging import GenerationRun, JudgeRun, JudgeTemplate, JudgmentCall
from annotations.models.rating import (
    Adjudication,
    Assignment,
    Judge,
    Judgment,
    Rater,
    Rating,
    SafetyReview,
    SideBalance,
    Span,
)
from annotations.models.study import SCALE_CHOICES, Criterion, RubricVersion, Study, StudyCriterion, StudyMembership
from annotations.models.survey import Survey, SurveyResponse, WeightSet

__all__ = [
    "SCALE_CHOICES",
    "Adjudication",
    "ApiToken",
    "Assignment",
    "AuditEvent",
    "Comparison",
    "Criterion",
    "GenerationRun",
    "Invitation",
    "JobStatus",
    "Judge",
    "JudgeRun",
    "JudgeTemplate",
    "Judgment",
    "JudgmentCall",
    "PasswordResetLink",
    "PreferenceExport",
    "Profile",
    "Prompt",
    "Rater",
    "Rating",
    "ReportSnapshot",
    "Response",
    "RubricVersion",
    "SafetyReview",
    "ScreeningHit",
    "SideBalance",
    "Span",
    "Study",
    "StudyCriterion",
    "StudyMembership",
    "Survey",
    "SurveyResponse",
    "Sweep",
    "System",
    "TrainingJob",
    "TrainingMetric",
    "WeightSet",
]
