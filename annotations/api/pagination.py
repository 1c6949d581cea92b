"""The API's one pagination class."""

from rest_framework.pagination import LimitOffsetPagination

MAX_PAGE_SIZE = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination whose `limit` is capped: a huge value would reach PostgreSQL as a LIMIT past bigint.

    A huge `offset` needs no cap: DRF answers an empty page once the offset passes the row count."""

    max_limit = MAX_PAGE_SIZE
