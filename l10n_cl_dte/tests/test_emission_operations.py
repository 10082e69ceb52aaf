import base64
import datetime
import os

from dte_native import testkit

from odoo import Command, fields
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import SQL

from .test_l10n_cl_dte import ISSUER_RUT, L10nClDteCommon


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestEmissionOperations(L10nClDteCommon):
    """A new folio after an SII rejection, the folio forecast, the alert cron, the guided setup
    and the boleta / thermal ticket layouts."""

    def _activities(self, record, summary):
        return self.env['mail.activity'].search([
            ('res_model', '=', record._name), ('res_id', '=', record.id), ('summary', '=', summary)])

    # --- new folio after a rejection ---------------------------------------------------------

    def test_new_folio_after_rejection(self):
        invoice = self._invoice('33')
        first = invoice.l10n_cl_dte_document_id
        self.assertEqual((first.folio, invoice.name), (1, 'FAC 000001'))
        # Not rejected: no new folio, and no reset to draft.
        with self.assertRaisesRegex(UserError, 'rejected by SII'):
            invoice.action_l10n_cl_dte_new_folio()
        first._set_state('sent', 'track 1')
        first._set_state('rejected', 'DTE Rechazado: firma')
        invoice.action_l10n_cl_dte_new_folio()
        second = invoice.l10n_cl_dte_document_id
        self.assertEqual(first.state, 'cancelled')
        self.assertIn('annulled', first.sii_message)
        self.assertEqual((second.folio, second.state, invoice.name, invoice.state),
                         (2, 'to_send', 'FAC 000002', 'posted'))
        self._verify(second._signed_xml())
        # Rejected again: the user resets to draft, corrects the price and confirms: folio 3.
        second._set_state('sent', 'track 2')
        second._set_state('rejected', 'DTE Rechazado: monto')
        invoice.button_draft()
        self.assertEqual(second.state, 'cancelled')
        invoice.invoice_line_ids[0].price_unit = 6000
        invoice.action_post()
        third = invoice.l10n_cl_dte_document_id
        self.assertEqual((third.folio, invoice.name), (3, 'FAC 000003'))
        self.assertEqual(third.amount_total, round(invoice.amount_total))
        # Every folio is accounted for: two annulled, one live.
        self.assertEqual(invoice.l10n_cl_dte_document_ids.sorted('folio').mapped('state'),
                         ['cancelled', 'cancelled', 'to_send'])
        self.assertEqual(self.cafs[33].next_folio, 4)

    # --- forecast and alerts -----------------------------------------------------------------

    def test_forecast_and_caf_alerts(self):
        caf = self.cafs[33]
        self.assertEqual((caf.daily_usage, caf.days_left), (0.0, 0))
        for _i in range(3):
            self._invoice('33')
        caf.invalidate_recordset()
        self.assertAlmostEqual(caf.daily_usage, 3 / 30)
        today = fields.Date.context_today(caf)

        def expected_days(folios):
            # The average use, capped by the CAF's expiry date.
            days = int(folios / (3 / 30))
            return min(days, (caf.expires_on - today).days) if caf.expires_on else days

        self.assertEqual(caf.days_left, expected_days(97))
        self.assertEqual(caf.forecast_exhausted_on, today + datetime.timedelta(days=caf.days_left))
        self.assertIn('97 folios', caf.forecast_note)
        # A second range of the same type waits behind the first one.
        later = self._load_caf(testkit.make_caf(ISSUER_RUT, 33, self.sii_private_pem, folio_from=101, folio_to=110))
        self.assertEqual(later.folios_ahead, 97)
        self.assertEqual(later.days_left, expected_days(97 + 10))
        # The dashboard (kanban) and the form render.
        self.env['l10n_cl_dte.caf'].get_views([(False, 'kanban'), (False, 'form')])

        # A small CAF runs low: the cron files one activity per DTE manager, once.
        small = self._load_caf(testkit.make_caf(ISSUER_RUT, 34, self.sii_private_pem, folio_from=1, folio_to=5))
        found = self.env['res.company']._cron_l10n_cl_dte_alerts()
        self.assertGreaterEqual(found['caf'], 1)
        alerts = self._activities(small, 'CAF: request new folios')
        self.assertIn(self.env.user, alerts.user_id)
        self.assertIn('5 folios left', alerts[0].note)
        # The first 33 range is covered by the second one only when that has folios to spare: no
        # alert for a healthy CAF.
        self.assertFalse(self._activities(caf, 'CAF: request new folios'))
        self.env['res.company']._cron_l10n_cl_dte_alerts()
        self.assertEqual(len(self._activities(small, 'CAF: request new folios')), len(alerts))

    def test_certificate_expiry_alert(self):
        soon = testkit.make_certificate(self.kit.signer_rut, 'pw', days_valid=10)
        self.certificate.active = False
        cert = self.env['l10n_cl_dte.certificate'].create({
            'p12_file': base64.b64encode(soon.p12), 'p12_password': 'pw', 'company_id': self.company.id})
        self.assertEqual(cert.state, 'expiring')
        found = self.env['res.company']._cron_l10n_cl_dte_alerts()
        self.assertGreaterEqual(found['certificate'], 1)
        self.assertTrue(self._activities(cert, 'DTE certificate expires'))

    def test_stuck_document_alert(self):
        invoice = self._invoice('33')
        doc = invoice.l10n_cl_dte_document_id
        self.assertFalse(self.env['res.company']._cron_l10n_cl_dte_alerts()['stuck'])
        doc.flush_recordset()
        self.env.cr.execute(SQL(
            "UPDATE l10n_cl_dte_document SET create_date = now() at time zone 'UTC' - interval '3 hours' "
            "WHERE id = %s", doc.id))
        doc.invalidate_recordset(['create_date'])
        self.assertEqual(self.env['res.company']._cron_l10n_cl_dte_alerts()['stuck'], 1)
        activity = self._activities(invoice, 'DTE without SII answer')
        self.assertTrue(activity)
        self.assertIn(doc.name, activity[0].note)

    # --- guided setup ------------------------------------------------------------------------

    def test_setup_checklist(self):
        self.assertTrue(self.company.l10n_cl_dte_setup_done, self.company.l10n_cl_dte_setup_html)
        html = str(self.company.l10n_cl_dte_setup_html)
        self.assertIn('Signing certificate', html)
        self.assertEqual(html.count('fa-times'), 1, html)  # only the environment: still the simulator
        # A bare Chilean company: everything missing, each with where to fix it.
        bare = self.env['res.company'].create({'name': 'Empresa Nueva', 'country_id': self.env.ref('base.cl').id})
        steps = {key: (done, hint) for key, done, _label, hint in bare._l10n_cl_dte_setup_steps()}
        self.assertFalse(bare.l10n_cl_dte_setup_done)
        for key in ('rut', 'certificate', 'caf_33', 'caf_61', 'journal', 'resolution'):
            self.assertFalse(steps[key][0], key)
        self.assertIn('DTE Certificates', steps['certificate'][1])
        # The settings page shows the checklist.
        settings = self.env['res.config.settings'].create({})
        self.assertIn('fa-check', str(settings.l10n_cl_dte_setup_html))
        self.env['res.config.settings'].get_views([(False, 'form')])

    # --- printed layouts ---------------------------------------------------------------------

    def test_boleta_and_thermal_layouts_render(self):
        boleta = self._invoice('39', partner=self.consumer, lines=[
            {'name': 'Pan amasado', 'quantity': 2, 'price_unit': 1000},
            {'name': 'Leche entera', 'quantity': 4, 'price_unit': 990}])
        Report = self.env['ir.actions.report']
        html = Report._render_qweb_html('l10n_cl_dte.report_boleta', boleta.ids)[0]
        for needle in (b'El IVA de esta boleta es', b'data:image/png;base64,', b'Timbre Electr',
                       b'BOLETA', b'SANTIAGO ORIENTE', b'Pan amasado'):
            self.assertIn(needle, html)
        invoice = self._invoice('33')
        ticket = Report._render_qweb_html('l10n_cl_dte.report_dte_ticket', (boleta | invoice).ids)[0]
        self.assertEqual(ticket.count(b'name="l10n_cl_dte_ticket"'), 2)
        self.assertIn(b'data:image/png;base64,', ticket)
        self.assertIn(b'Neto', ticket)  # the factura shows net and taxes; the boleta does not
        report = self.env.ref('l10n_cl_dte.action_report_dte_ticket')
        self.assertEqual(report.paperformat_id.page_width, 80)
        # A real PDF when wkhtmltopdf is installed (Odoo skips it in tests unless forced).
        if Report.get_wkhtmltopdf_state() == 'ok':
            # L10N_CL_DTE_REPORT_DIR=/some/dir keeps the PDFs to look at them.
            keep = os.environ.get('L10N_CL_DTE_REPORT_DIR')
            for report_name, move in (('l10n_cl_dte.report_dte_ticket', boleta),
                                      ('l10n_cl_dte.report_boleta', boleta),
                                      ('l10n_cl_dte.report_dte_ticket', invoice)):
                pdf, kind = Report.with_context(force_report_rendering=True)._render_qweb_pdf(
                    report_name, move.ids)
                self.assertEqual(kind, 'pdf')
                self.assertTrue(pdf.startswith(b'%PDF'))
                if keep:
                    with open(os.path.join(keep, '%s-%s.pdf' % (report_name.split('.')[1], move.id)), 'wb') as f:
                        f.write(pdf)

    def test_ila_line_tax_on_printed_invoice(self):
        # The l10n_cl report (tax totals) still renders with an additional tax on the invoice.
        invoice = self._invoice('33', lines=[{'name': 'Vino', 'quantity': 2, 'price_unit': 5000,
                                              'tax_ids': [Command.set((self.iva | self.env['account.chart.template'].ref('ila_v_205_s')).ids)]}])
        html = self.env['ir.actions.report']._render_qweb_html('account.report_invoice', invoice.ids)[0]
        self.assertIn(b'Timbre Electr', html)
