"""manage.py audit_db_role ROLE --print-sql: the GRANT/REVOKE statements for running the app as ROLE."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from annotations.services.audit import audit_db_role_sql


class Command(BaseCommand):
    help = (
        "Print the PostgreSQL statements that let ROLE run the app with SELECT and INSERT only on the audit log. "
        "Run them as the owner of the tables (the role that runs migrate), e.g. "
        '`manage.py audit_db_role evalplatform_app --print-sql | psql "$OWNER_DATABASE_URL"`.'
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("role", help="The PostgreSQL role the web and worker processes log in as.")
        parser.add_argument("--print-sql", action="store_true", help="Print the statements (the only mode).")
        parser.add_argument("--schema", default="public")
        parser.add_argument("--database", default="", help="Database name; the configured one by default.")

    def handle(self, *args, **options) -> None:
        if not options["print_sql"]:
            raise CommandError("Pass --print-sql and run the output as the tables' owner (docs/operations.md).")
        database = options["database"] or connection.settings_dict["NAME"]
        try:
            statements = audit_db_role_sql(role=options["role"], database=database, schema=options["schema"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write("-- Run as the owner of the tables (the role that runs `manage.py migrate`).")
        self.stdout.write("BEGIN;")
        for statement in statements:
            self.stdout.write(statement + ";")
        self.stdout.write("COMMIT;")
