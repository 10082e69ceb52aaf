import threading
from contextlib import closing

import psycopg2.errors

from odoo import sql_db
from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL, mute_logger

DOC_TYPE = 9033  # a type no real CAF uses: the rows of this test never meet real ones


@tagged('post_install', '-at_install')
class TestFolioConcurrency(TransactionCase):
    """Two real PostgreSQL transactions (separate connections, not the test cursor) taking folios
    from the same CAF row with the SQL the posting uses."""

    def setUp(self):
        super().setUp()
        self.take = self.env['l10n_cl_dte.caf']._l10n_cl_dte_take_folio_sql
        self.db = sql_db.db_connect(self.env.cr.dbname)
        company_id = self.env.ref('base.main_company').id
        with closing(self.db.cursor()) as cr:
            cr.execute(SQL(
                """INSERT INTO l10n_cl_dte_caf (company_id, doc_type, folio_from, folio_to, next_folio)
                   VALUES (%s, %s, 1, 3, 1) RETURNING id""", company_id, DOC_TYPE))
            self.caf_id = cr.fetchone()[0]
            # Committed on purpose, on a connection of its own: other transactions must see it.
            cr.commit()  # pylint: disable=invalid-commit
        self.company_id = company_id
        self.addCleanup(self._drop_row)

    def _drop_row(self):
        with closing(self.db.cursor()) as cr:
            cr.execute(SQL('DELETE FROM l10n_cl_dte_caf WHERE id = %s', self.caf_id))
            cr.commit()  # pylint: disable=invalid-commit

    def _take(self, cr):
        return self.take(cr, self.company_id, DOC_TYPE, '2000-01-01')

    @mute_logger('odoo.sql_db')  # the expected lock timeout and serialization failure
    def test_two_transactions_never_share_a_folio(self):
        with closing(self.db.cursor()) as cr_a, closing(self.db.cursor()) as cr_b:
            self.assertEqual(self._take(cr_a), (self.caf_id, 1))
            # B cannot take a folio while A's transaction holds the CAF row.
            cr_b.execute("SET LOCAL lock_timeout = '300ms'")
            with self.assertRaises(psycopg2.errors.LockNotAvailable):
                self._take(cr_b)
            cr_b.rollback()
            # A crashes (rollback): folio 1 is not burnt, B gets it.
            cr_a.rollback()
            self.assertEqual(self._take(cr_b), (self.caf_id, 1))

            # A now waits on B's lock; when B commits, A must not reuse folio 1: under REPEATABLE
            # READ it gets a serialization failure (Odoo retries the request) and then folio 2.
            outcome = {}

            def worker():
                try:
                    outcome['first'] = self._take(cr_a)
                except psycopg2.errors.SerializationFailure:
                    outcome['first'] = 'retry'
                    cr_a.rollback()
                outcome['final'] = outcome['first'] if outcome['first'] != 'retry' else self._take(cr_a)
                cr_a.commit()

            thread = threading.Thread(target=worker)
            thread.start()
            thread.join(0.5)
            self.assertTrue(thread.is_alive(), 'A must wait for the lock B holds')
            cr_b.commit()
            thread.join(30)
            self.assertFalse(thread.is_alive())
            self.assertEqual(outcome['final'], (self.caf_id, 2))
            self.assertNotEqual(outcome['first'], (self.caf_id, 1))

        with closing(self.db.cursor()) as cr:
            cr.execute(SQL('SELECT next_folio FROM l10n_cl_dte_caf WHERE id = %s', self.caf_id))
            self.assertEqual(cr.fetchone()[0], 3)
