"""Hot querysets compiled to SQL once per process, then run with new values.

On the clinician's rating loop, turning a queryset into SQL cost more web CPU than PostgreSQL took to run it
(the pair page's query and the submit's locked read: about 6 ms of compilation per loop, a quarter of the
loop's web CPU, against well under 1 ms of execution). Such a query is still written as a queryset, so it
reads like every other query and returns model instances with their select_related objects and extra
columns; it is compiled once with stand-in values for its parameters, and each call puts the real values in
at the stand-ins' positions and runs the same SQL (which PostgreSQL then also prepares once per connection).

Only the values named as parameters may change between calls: everything else the builder reads is part of
the cache key. A stand-in the compiled parameters do not contain (the builder inlined or dropped it) is an
error at the first call, never a silently wrong query.
"""

import threading
import uuid
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

from django.db import connections, router
from django.db.models import Field, Model, QuerySet
from django.db.models.query import get_related_populators

# Distinct stand-ins per type, inside every backend's integer range (the ORM refuses out-of-range lookups).
_INT_BASE = 2_000_000_000
_UUID_BASE = 0x5EED_0000_0000_0000_0000_0000_0000_0000


def _stand_in(kind: type, index: int) -> Any:
    if kind is int:
        return _INT_BASE + 7 * index + 3
    if kind is uuid.UUID:
        return uuid.UUID(int=_UUID_BASE + index)
    if kind is datetime:
        return datetime(1971, 2, 3, 4, 5, index % 60, 123456, tzinfo=UTC)
    if kind is str:
        return f"compiled-stand-in-{index}-{_INT_BASE}"
    raise TypeError(f"no stand-in for parameters of type {kind.__name__}")


def _transforms(connection: Any) -> list[Callable[[Any], Any]]:
    """How the ORM may have turned a value into a query parameter: as it is (PostgreSQL), a UUID as hex text and
    a datetime as the backend's text (SQLite)."""
    return [
        lambda value: value,
        lambda value: value.hex if isinstance(value, uuid.UUID) else None,
        lambda value: connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else None,
    ]


class CompiledQuery:
    """One queryset's SQL and the positions of its parameters, for one database connection alias."""

    def __init__(self, build: Callable[..., QuerySet], parameters: dict[str, type], using: str | None) -> None:
        self.parameters = dict(parameters)
        stand_ins = {name: _stand_in(kind, index) for index, (name, kind) in enumerate(parameters.items())}
        queryset = build(**stand_ins)
        self.using = using or router.db_for_read(queryset.model)
        connection = connections[self.using]
        self.compiler = queryset.query.get_compiler(using=self.using)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        self.slots: list[tuple[int, str, Callable[[Any], Any]]] = []
        found = set()
        for position, param in enumerate(self.params):
            for name, stand_in in stand_ins.items():
                transform = next((t for t in _transforms(connection) if t(stand_in) == param), None)
                if transform is not None:
                    self.slots.append((position, name, transform))
                    found.add(name)
                    break
        missing = sorted(set(stand_ins) - found)
        if missing:
            raise RuntimeError(f"compiled query: the SQL has no parameter for {', '.join(missing)}")
        # What results_iter would work out again on every call: the columns' converters (JSON, UUIDs on SQLite).
        compiler = self.compiler
        converters = compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]])
        self.converters = list(converters.items())
        self.model_rows = self.compiler.klass_info is not None
        if self.model_rows:
            klass_info, select = self.compiler.klass_info, self.compiler.select
            start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
            self.model_cls = klass_info["model"]
            self.model_slice = slice(start, end)
            self.init_list = [column[0].target.attname for column in select[start:end]]
            self.related_populators = get_related_populators(klass_info, select, self.using)
            self.annotation_col_map = dict(self.compiler.annotation_col_map or {})

    def bind(self, values: dict[str, Any]) -> list[Any]:
        """The query's parameters with these values in place of the stand-ins."""
        for name, kind in self.parameters.items():
            if not isinstance(values[name], kind):  # the ORM would have converted it; here it must already be one
                raise TypeError(f"compiled query: {name} must be a {kind.__name__}, not {type(values[name]).__name__}")
        params = list(self.params)
        for position, name, transform in self.slots:
            params[position] = transform(values[name])
        return params

    def models(self, values: dict[str, Any]) -> list[Model]:
        """The rows as model instances, exactly as iterating the queryset would build them."""
        connection = connections[self.using]  # this thread's (the compiler holds the compiling thread's)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.bind(values))
            rows = cursor.fetchall()
        objects = []
        for row in rows:
            if self.converters:
                row = list(row)
                for position, (functions, expression) in self.converters:
                    for function in functions:
                        row[position] = function(row[position], expression, connection)
            obj = self.model_cls.from_db(self.using, self.init_list, row[self.model_slice])
            for populator in self.related_populators:
                populator.populate(row, obj)
            for name, column in self.annotation_col_map.items():
                setattr(obj, name, row[column])
            objects.append(obj)
        return objects


_COMPILED: dict[tuple[Hashable, str | None], CompiledQuery] = {}
_LOCK = threading.Lock()


def compiled(
    key: Hashable, build: Callable[..., QuerySet], parameters: dict[str, type], using: str | None = None
) -> CompiledQuery:
    """The CompiledQuery of `build` (a function of the named parameters returning a queryset) under `key`,
    compiled on first use in this process. `key` must hold everything else the builder depends on."""
    cache_key = (key, using)
    query = _COMPILED.get(cache_key)
    if query is None:
        with _LOCK:
            query = _COMPILED.get(cache_key)
            if query is None:
                query = _COMPILED[cache_key] = CompiledQuery(build, parameters, using)
    return query


def first(key: Hashable, build: Callable[..., QuerySet], parameters: dict[str, type], **values: Any) -> Any:
    """The first model instance of the compiled query with these values, or None (the builder slices [:1])."""
    rows = compiled(key, build, parameters).models(values)
    return rows[0] if rows else None


# ---- writes ------------------------------------------------------------------------------------------------
#
# The same reasoning for the rating loop's INSERTs and UPDATEs (PostgreSQL): the ORM built each statement anew,
# about 0.4 ms of web CPU for the seven ratings alone against 0.1 ms to send a prepared one. The statements are
# built once per process from the model's fields; the values go through each field's own conversion, except
# for plain columns whose Python value is already what the database takes.

# Field types whose values psycopg sends as they are (no get_db_prep_save needed).
_PLAIN_TYPES = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "FloatField",
    "IntegerField",
    "PositiveBigIntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
    "TextField",
    "UUIDField",
}


def _column_conversion(field: Field, connection: Any) -> Callable[[Any], Any] | None:
    """How the ORM's insert would turn `field`'s value into its column's parameter; None where it is the value."""
    target = field.target_field if field.is_relation else field
    kind = target.get_internal_type()
    if kind in _PLAIN_TYPES:
        return None
    if kind == "DateTimeField":
        # Aware datetimes go as they are; a naive one takes the ORM's conversion (and its warning).
        return lambda value: (
            value if value is None or value.tzinfo is not None else field.get_db_prep_save(value, connection)
        )
    return lambda value: field.get_db_prep_save(value, connection)


class ModelWrites:
    """One model's INSERT (any number of rows, one statement) and UPDATE-by-primary-key SQL with the columns'
    values, built once per process. PostgreSQL only: the INSERT is an UNNEST of one array per column, as
    Django's own bulk_create writes it there."""

    def __init__(self, model: type[Model]) -> None:
        self.using = router.db_for_write(model)
        connection = connections[self.using]
        qn = connection.ops.quote_name
        meta = model._meta
        self.table = qn(meta.db_table)
        self.pk_column = qn(meta.pk.column)
        self.insert_fields = [f for f in meta.concrete_fields if f is not meta.auto_field and not f.generated]
        self.fields = {f.attname: f for f in meta.concrete_fields}
        self.columns = {f.attname: qn(f.column) for f in meta.concrete_fields}
        self.conversions = {f.attname: _column_conversion(f, connection) for f in meta.concrete_fields}
        columns = ", ".join(self.columns[f.attname] for f in self.insert_fields)
        # varchar(64)[] would truncate nothing but is not a type UNNEST takes: the base type, as Django does.
        arrays = ", ".join(f"%s::{f.db_type(connection).split('(')[0]}[]" for f in self.insert_fields)
        self.insert_sql = f"INSERT INTO {self.table} ({columns}) SELECT * FROM UNNEST({arrays})"  # noqa: S608

    def _value(self, obj: Model, field: Field, raw: bool) -> Any:
        # pre_save sets auto_now and auto_now_add fields on the instance, as save() does; raw writes them as set.
        value = getattr(obj, field.attname) if raw else field.pre_save(obj, True)
        convert = self.conversions[field.attname]
        return value if convert is None else convert(value)

    def insert_params(self, objs: list[Model], *, raw: bool = False) -> list[list[Any]]:
        """One array per column for insert_sql; `raw` writes auto_now(_add) fields as set (save_base's raw)."""
        return [[self._value(obj, field, raw) for obj in objs] for field in self.insert_fields]

    def insert(self, objs: list[Model], *, raw: bool = False, along: tuple[str, list[Any]] | None = None) -> None:
        """Insert the instances in one statement and mark them saved with their new primary keys; `along`, a
        statement and its parameters, runs in the same statement (as a WITH clause)."""
        sql, params = f"{self.insert_sql} RETURNING {self.pk_column}", self.insert_params(objs, raw=raw)
        if along is not None:
            sql, params = f"WITH along AS ({along[0]}) {sql}", [*along[1], *params]
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            pks = [row[0] for row in cursor.fetchall()]
        self.inserted(objs, pks)

    def update_sql(self, fields: tuple[str, ...]) -> str:
        """UPDATE of these fields (attnames) of one row; parameters: update_params(obj, fields)."""
        assignments = ", ".join(f"{self.columns[name]} = %s" for name in fields)
        return f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s"  # noqa: S608

    def update_params(self, obj: Model, fields: tuple[str, ...]) -> list[Any]:
        return [*(self._value(obj, self.fields[name], False) for name in fields), obj.pk]

    def inserted(self, objs: list[Model], pks: list[Any] | None = None) -> None:
        """Mark the instances as saved, as the ORM would after its insert (with the returned primary keys)."""
        for index, obj in enumerate(objs):
            if pks is not None:
                obj.pk = pks[index]
            obj._state.adding = False
            obj._state.db = self.using


_WRITES: dict[type[Model], ModelWrites] = {}


def writes(model: type[Model]) -> ModelWrites:
    """The model's ModelWrites, built on first use in this process."""
    found = _WRITES.get(model)
    if found is None:
        with _LOCK:
            found = _WRITES.setdefault(model, ModelWrites(model))
    return found
