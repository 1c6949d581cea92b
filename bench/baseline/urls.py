from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import connection, transaction
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path

from bench.baseline.models import Answer, Comparison, Item

CRITERIA = [f"c{i}" for i in range(7)]
CHOICES = [("-1", "Response 1 better"), ("0", "About the same"), ("1", "Response 2 better")]

CLAIM = f"""
UPDATE {Item._meta.db_table} AS i SET rater_id = %s, status = 'leased', leased_at = now()
FROM {Comparison._meta.db_table} AS c
WHERE i.id = (
    SELECT o.id FROM {Item._meta.db_table} o
    WHERE o.status = 'open'
      AND NOT EXISTS (SELECT 1 FROM {Item._meta.db_table} s WHERE s.comparison_id = o.comparison_id AND s.rater_id = %s)
    ORDER BY o.slot, o.id LIMIT 1 FOR UPDATE SKIP LOCKED
) AND c.id = i.comparison_id
RETURNING i.id, c.message, c.first, c.second
"""  # noqa: S608 (table names only)


class RatingForm(forms.Form):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key in CRITERIA:
            self.fields[key] = forms.TypedChoiceField(choices=CHOICES, coerce=int)


@login_required
def rate(request):
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, [request.user.pk, request.user.pk])
        row = cursor.fetchone()
    if row is None:
        return HttpResponse("Nothing left.", status=204)
    item_id, message, first, second = row
    context = {"item_id": item_id, "message": message, "responses": [first, second], "criteria": CRITERIA}
    return render(request, "baseline/item.html", {**context, "choices": CHOICES})


@login_required
def submit(request, item_id: int):
    form = RatingForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Invalid form.", status=400)
    with transaction.atomic():
        done = Item.objects.filter(pk=item_id, rater=request.user, status="leased").update(status="done")
        if done != 1:
            return HttpResponse("Not yours, or already done.", status=409)
        Answer.objects.bulk_create(
            [Answer(item_id=item_id, criterion=i, value=form.cleaned_data[key]) for i, key in enumerate(CRITERIA)]
        )
    return _see_other("/rate/")


def _see_other(url: str) -> HttpResponse:
    response = HttpResponse(status=303)
    response["Location"] = url
    return response


urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="baseline/login.html")),
    path("rate/", rate),
    path("rate/<int:item_id>/", submit),
]
