"""The bare Django rating loop that bench/rating_loop.py measures the clinician pages against.

Its own minimal project and tables: login with Django's session, CSRF and auth middleware; GET /rate/ claims
the next item with one `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING ...`
joined to the item's texts and renders a page of 7 radio groups with a CSRF token; POST /rate/<id>/ validates a
form of 7 fields, marks the item done with one conditional UPDATE and inserts 7 answers with one bulk_create in
one transaction, then 303s back to /rate/. Nothing else: the floor a Django page loop costs on this machine.
"""
