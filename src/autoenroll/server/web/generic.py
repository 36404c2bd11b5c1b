"""Shared generic views (NetBox's ObjectListView/ObjectEditView idea): every page is a short subclass.

Why here: the customer restriction happens once, in `RestrictedMixin.get_queryset` via `restrict()`;
pages only declare their model, columns, form and filters. An object of another customer is simply not
in the queryset, so it answers 404 without any view looking at ownership.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Model, QuerySet
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.text import capfirst
from django.views.generic import DeleteView, ListView, UpdateView

from autoenroll.server.utils.restrict import customer_of, is_super_admin, may_add, restrict

from .tables import Table


class RestrictedMixin(LoginRequiredMixin):
    """Signed-in Super Admins and Customer Admins only; querysets always pass through `restrict()`."""

    model: type[Model]
    queryset: QuerySet | None = None
    super_admin_only = False
    nav = ""  # which navigation entry is current
    verbose_name = ""  # what the pages call one object; the model's verbose name if empty

    def noun(self) -> str:
        return self.verbose_name or self.model._meta.verbose_name

    def dispatch(self, request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return self.handle_no_permission()
        if not is_super_admin(user) and (self.super_admin_only or customer_of(user) is None):
            raise PermissionDenied("Not available to this account.")
        return super().dispatch(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        base = self.queryset if self.queryset is not None else self.model._default_manager.all()
        return restrict(base.all(), self.request.user)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(nav=self.nav, verbose_name=self.noun())
        return context


class ObjectListView(RestrictedMixin, ListView):
    """A filterable, paginated table of the restricted queryset."""

    template_name = "web/object_list.html"
    table: type[Table]
    filter_form = None  # a Form with a `filter(queryset)` method
    paginate_by = 50
    title = ""
    add_url = ""  # URL name of the add page, shown when the user may add
    actions_template = ""  # extra buttons above the table

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        self.filters = self.filter_form(self.request.GET or None) if self.filter_form else None
        if self.filters is not None and self.filters.is_bound:
            # A filter that cannot be applied (a serial that is not hex) finds nothing, next to its error.
            queryset = self.filters.filter(queryset) if self.filters.is_valid() else queryset.none()
        return queryset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        table = self.table(context["object_list"], self.request)
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(
            title=self.title or self.model._meta.verbose_name_plural.capitalize(),
            table=table,
            filters=self.filters,
            querystring=query.urlencode(),
            add_url=reverse(f"web:{self.add_url}") if self.add_url and may_add(self.model, user) else "",
            actions_template=self.actions_template,
        )
        return context


class RestrictedFormMixin:
    """Hands the user to the form, which restricts its customer and choice fields (see forms.RestrictedModelForm)."""

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["user"] = self.request.user
        return kwargs


class ObjectEditView(RestrictedMixin, RestrictedFormMixin, UpdateView):
    """Add (no pk in the URL) or edit (pk) one object of the restricted queryset."""

    template_name = "web/object_edit.html"
    list_url = ""

    def get_object(self, queryset=None):
        if "pk" not in self.kwargs:
            if not may_add(self.model, self.request.user):
                raise PermissionDenied("You may not add this.")
            return None
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])

    def get_success_url(self) -> str:
        return reverse(f"web:{self.list_url}")

    def form_valid(self, form):
        try:
            with transaction.atomic():
                response = super().form_valid(form)
        except IntegrityError:  # a second submission that passed the form's checks before the first was saved
            form.add_error(None, f"Another request saved a {self.noun()} like this one a moment ago: see the list.")
            return self.form_invalid(form)
        verb = "saved" if "pk" in self.kwargs else "added"
        messages.success(self.request, f"{capfirst(self.noun())} {self.object} {verb}.")
        self.after_save(self.object)
        return response

    def after_save(self, obj) -> None:
        """Hook for pages whose saves must take effect at once elsewhere (caches)."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(is_new=self.object is None, cancel_url=reverse(f"web:{self.list_url}"))
        return context


class ObjectDeleteView(RestrictedMixin, DeleteView):
    """Delete after a confirmation page (a POST with CSRF token)."""

    template_name = "web/object_delete.html"
    list_url = ""

    def get_object(self, queryset=None):
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])

    def get_success_url(self) -> str:
        return reverse(f"web:{self.list_url}")

    def form_valid(self, form):
        name = str(self.object)
        self.object.delete()
        messages.success(self.request, f"{capfirst(self.noun())} {name} deleted.")
        self.after_delete()
        return HttpResponseRedirect(self.get_success_url())

    def after_delete(self) -> None:
        """Hook, as ObjectEditView.after_save."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["cancel_url"] = self.get_success_url()
        return context
