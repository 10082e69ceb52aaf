import base64
import shutil
import tempfile

import dte_native
from dte_native import testkit

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, tagged
from odoo.tools import mute_logger

from odoo.addons.account.tests.common import AccountTestInvoicingCommon

ISSUER_RUT = '76543210-3'
CUSTOMER_RUT = '77123456-9'


class L10nClDteCommon(AccountTestInvoicingCommon):
    """A Chilean company with a DTE sale journal, whose certificate and CAFs are made by
    dte_native.testkit (a test SII key trusted through the system parameter)."""

    @classmethod
    @AccountTestInvoicingCommon.setup_country('cl')
    def setUpClass(cls):
        super().setUpClass()
        cls.kit_dir = tempfile.mkdtemp(prefix='l10n_cl_dte_test_')
        cls.addClassCleanup(shutil.rmtree, cls.kit_dir, True)
        cls.kit = testkit.write_kit(cls.kit_dir, rut=ISSUER_RUT, types=[33, 34, 39, 56, 61])
        cls.sii_private_pem = cls.kit.sii_private_key_path.read_text()
        cls.env['ir.config_parameter'].sudo().set_param(
            'l10n_cl_dte.trusted_sii_key_dirs', str(cls.kit.sii_keys_dir))

        # Configuring certificates and CAFs is a DTE manager's job.
        cls.env.user.group_ids |= cls.env.ref('l10n_cl_dte.group_dte_manager')
        cls.company = cls.company_data['company']
        cls.company.write({
            'vat': ISSUER_RUT,
            'name': 'Comercial Los Aromos SpA',
            'street': 'Av. Providencia 1234',
            'city': 'Providencia',
            'l10n_cl_activity_description': 'Venta al por mayor de alimentos',
            'l10n_cl_dte_acteco_codes': '463020',
            'l10n_cl_dte_resolution_number': 80,
            'l10n_cl_dte_resolution_date': '2014-08-22',
            'l10n_cl_sii_regional_office': 'SANTIAGO ORIENTE',
        })
        cls.journal = cls.company_data['default_journal_sale']
        cls.journal.write({'l10n_latam_use_documents': True, 'l10n_cl_dte_enabled': True})

        cls.certificate = cls.env['l10n_cl_dte.certificate'].create({
            'p12_file': base64.b64encode(cls.kit.cert_path.read_bytes()),
            'p12_password': cls.kit.password,
            'company_id': cls.company.id,
        })
        cls.cafs = {
            doc_type: cls._load_caf(cls.kit.caf_paths[doc_type].read_bytes())
            for doc_type in (33, 39, 56, 61)
        }
        cls.partner = cls.env['res.partner'].create({
            'name': 'Distribuidora Sur Limitada',
            'is_company': True,
            'country_id': cls.env.ref('base.cl').id,
            'l10n_latam_identification_type_id': cls.env.ref('l10n_cl.it_RUT').id,
            'vat': CUSTOMER_RUT,
            'l10n_cl_sii_taxpayer_type': '1',
            'l10n_cl_activity_description': 'Distribución de alimentos',
            'street': 'Los Carrera 455',
            'city': 'Concepción',
        })
        cls.consumer = cls.env['res.partner'].create({
            'name': 'Consumidor final',
            'country_id': cls.env.ref('base.cl').id,
            'l10n_cl_sii_taxpayer_type': '3',
        })
        cls.iva = cls.env['account.chart.template'].ref('ITAX_19')

    @classmethod
    def _load_caf(cls, data):
        return cls.env['l10n_cl_dte.caf'].create({
            'caf_file': base64.b64encode(data), 'company_id': cls.company.id})

    def _invoice(self, code='33', partner=None, lines=None, move_type='out_invoice', post=True):
        lines = lines or [
            {'name': 'Aceite de oliva 1 L', 'quantity': 24, 'price_unit': 6490, 'discount': 5},
            {'name': 'Resma papel carta', 'quantity': 3, 'price_unit': 28900},
        ]
        move = self.env['account.move'].create({
            'move_type': move_type,
            'partner_id': (partner or self.partner).id,
            'journal_id': self.journal.id,
            'invoice_date': fields.Date.context_today(self.env.user),
            'l10n_latam_document_type_id': self.env['l10n_latam.document.type'].search(
                [('code', '=', code), ('country_id.code', '=', 'CL')], limit=1).id,
            'invoice_line_ids': [
                (0, 0, {'tax_ids': [(6, 0, self.iva.ids)], **line}) for line in lines],
        })
        if post:
            move.action_post()
        return move

    def _start_simulator(self, **config):
        try:
            from dte_native.simulator import Simulator  # noqa: PLC0415
        except ImportError as e:
            self.skipTest('dte_native.simulator unavailable: %s' % e)
        simulator = Simulator(port=0, sii_keys=str(self.kit.sii_keys_dir), config={'step_delay_s': 0, **config})
        try:
            url = simulator.start()
        except FileNotFoundError as e:  # no XSD folder on this machine
            self.skipTest('SII simulator cannot start: %s' % e)
        self.addCleanup(simulator.stop)
        self.company.l10n_cl_dte_simulator_url = url
        self.company.l10n_cl_dte_environment = 'simulator'
        return simulator

    def _verify(self, xml):
        report = dte_native.verify(xml, keyring=self.kit.keyring())
        self.assertTrue(report.ok, [(c.name, c.reason) for c in report.failures])
        return report


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestL10nClDte(L10nClDteCommon):
    """Posting invoices, notes and boletas, the SII exchanges and the security of the secrets."""

    # --- set-up checks ---------------------------------------------------------------------

    def test_setup_records(self):
        self.assertEqual(self.certificate.signer_rut, self.kit.signer_rut)
        self.assertEqual(self.certificate.state, 'valid')
        self.assertNotIn('PKCS', self.certificate.sudo().p12_cipher)
        self.assertNotIn(self.kit.password, self.certificate.sudo().password_cipher)
        self.assertEqual(self.company.l10n_cl_dte_certificate_id, self.certificate)
        caf = self.cafs[33]
        self.assertEqual((caf.folio_from, caf.folio_to, caf.next_folio, caf.folios_left), (1, 100, 1, 100))
        self.assertEqual(caf.l10n_latam_document_type_id.code, '33')
        self.assertEqual(self.iva.tax_group_id.l10n_cl_sii_code, 14)

    def test_caf_checks(self):
        # A CAF signed by a key nobody trusts.
        stranger = testkit.make_rsa_key()
        with self.assertRaisesRegex(UserError, 'not valid'):
            self._load_caf(testkit.make_caf(ISSUER_RUT, 33, stranger.private_pem, folio_from=500, folio_to=600))
        # A CAF of another company's RUT.
        with self.assertRaisesRegex(UserError, 'granted to RUT'):
            self._load_caf(testkit.make_caf('76192083-9', 33, self.sii_private_pem, folio_from=500, folio_to=600))
        # Overlapping an existing range.
        with self.assertRaisesRegex(Exception, 'overlap'):
            self._load_caf(testkit.make_caf(ISSUER_RUT, 33, self.sii_private_pem, folio_from=50, folio_to=150))

    # --- emission --------------------------------------------------------------------------

    def test_post_invoice_33(self):
        invoice = self._invoice('33')
        self.assertEqual(invoice.state, 'posted')
        self.assertEqual(invoice.name, 'FAC 000001')
        doc = invoice.l10n_cl_dte_document_id
        self.assertEqual((doc.doc_type, doc.folio, doc.state), (33, 1, 'to_send'))
        self.assertEqual(doc.amount_total, round(invoice.amount_total))
        self.assertEqual(self.cafs[33].next_folio, 2)
        report = self._verify(doc._signed_xml())
        self.assertEqual([(d.doc_type, d.folio, d.receiver_rut) for d in report.documents], [(33, 1, CUSTOMER_RUT)])
        # The envelope is ready to send and verifies too.
        envelope = doc._build_envelope()
        self._verify(envelope)
        # Sequence: the next invoice takes the next folio.
        second = self._invoice('33')
        self.assertEqual((second.name, second.l10n_cl_dte_document_id.folio), ('FAC 000002', 2))
        # A signed DTE cannot go back to draft.
        with self.assertRaisesRegex(UserError, 'credit note'):
            invoice.button_draft()
        # The stamp renders.
        png = base64.b64decode(invoice._l10n_cl_dte_barcode_png_b64())
        self.assertTrue(png.startswith(b'\x89PNG'))
        html = self.env['ir.actions.report']._render_qweb_html('account.report_invoice', invoice.ids)[0]
        self.assertIn(b'Timbre Electr', html)
        self.assertIn(b'data:image/png;base64,', html)
        self.assertIn(b'SANTIAGO ORIENTE', html)

    def test_credit_note_61_references_invoice(self):
        invoice = self._invoice('33')
        reversal = self.env['account.move.reversal'].with_context(
            active_model='account.move', active_ids=invoice.ids).create({
                'reason': 'Devolucion de mercaderia',
                'journal_id': self.journal.id,
                'date': invoice.invoice_date,
            })
        refund = self.env['account.move'].browse(reversal.refund_moves()['res_id'])
        refund.l10n_latam_document_type_id = self.env.ref('l10n_cl.dc_nc_f_dte')
        refund.action_post()
        doc = refund.l10n_cl_dte_document_id
        self.assertEqual((doc.doc_type, doc.folio), (61, 1))
        refs = refund._l10n_cl_dte_references()
        self.assertEqual(refs[0]['TpoDocRef'], '33')
        self.assertEqual(refs[0]['FolioRef'], invoice.l10n_latam_document_number)
        self.assertEqual(refs[0]['CodRef'], 1)
        self._verify(doc._signed_xml())

    def test_boleta_39(self):
        boleta = self._invoice('39', partner=self.consumer, lines=[
            {'name': 'Pan amasado', 'quantity': 2, 'price_unit': 1000},
            {'name': 'Leche entera', 'quantity': 4, 'price_unit': 990},
        ])
        doc = boleta.l10n_cl_dte_document_id
        self.assertEqual((doc.doc_type, doc.folio, doc.receiver_rut), (39, 1, '66666666-6'))
        self.assertEqual(doc.amount_total, round(boleta.amount_total))
        self._verify(doc._signed_xml())
        self._verify(doc._build_envelope())

    # --- failures that must not spend folios -----------------------------------------------

    def test_precheck_failure_spends_no_folio(self):
        no_address = self.partner.copy({'street': False, 'city': False, 'vat': CUSTOMER_RUT})
        move = self._invoice('33', partner=no_address, post=False)
        with self.assertRaisesRegex(UserError, 'no folio was used') as caught:
            move.action_post()
        self.assertIn('DirRecep', str(caught.exception))
        self.assertEqual(move.state, 'draft')
        self.assertEqual(self.cafs[33].next_folio, 1)
        self.assertFalse(self.env['l10n_cl_dte.document'].search([('move_id', '=', move.id)]))

    def test_rollback_gives_folio_back(self):
        caf = self.cafs[33]
        with self.assertRaises(RuntimeError), self.env.cr.savepoint():
            taken_caf, folio = self.env['l10n_cl_dte.caf']._l10n_cl_dte_take_folio(self.company, 33)
            self.assertEqual((taken_caf, folio), (caf, 1))
            self.assertEqual(caf.next_folio, 2)
            raise RuntimeError('crash after taking the folio')
        caf.invalidate_recordset(['next_folio', 'folios_left'])
        self.assertEqual(caf.next_folio, 1)
        self.assertEqual(self._invoice('33').l10n_cl_dte_document_id.folio, 1)

    def test_caf_exhausted(self):
        small = self._load_caf(testkit.make_caf(ISSUER_RUT, 34, self.sii_private_pem, folio_from=7, folio_to=7))
        exempt_line = [{'name': 'Asesoria exenta', 'quantity': 1, 'price_unit': 50000, 'tax_ids': [(5, 0, 0)]}]
        first = self._invoice('34', lines=exempt_line)
        self.assertEqual(first.l10n_cl_dte_document_id.folio, 7)
        self._verify(first.l10n_cl_dte_document_id._signed_xml())
        self.assertEqual((small.folios_left, small.state), (0, 'exhausted'))
        second = self._invoice('34', lines=exempt_line, post=False)
        with self.assertRaisesRegex(UserError, 'No folios left'):
            second.action_post()
        self.assertEqual(second.state, 'draft')

    def test_certificate_expired(self):
        expired = testkit.make_certificate(self.kit.signer_rut, 'pw', days_valid=-10)
        self.certificate.active = False
        self.env['l10n_cl_dte.certificate'].create({
            'p12_file': base64.b64encode(expired.p12), 'p12_password': 'pw', 'company_id': self.company.id})
        move = self._invoice('33', post=False)
        with self.assertRaisesRegex(UserError, 'no valid signing certificate'):
            move.action_post()
        self.assertEqual(self.cafs[33].next_folio, 1)

    # --- state machine ---------------------------------------------------------------------

    def test_state_machine(self):
        doc = self._invoice('33').l10n_cl_dte_document_id
        with self.assertRaisesRegex(UserError, 'cannot go from'):
            doc._set_state('accepted')
        doc._set_state('sent', 'track 123')
        doc._set_state('rejected', 'Error en firma')
        self.assertIn('Error en firma', doc.message_ids[0].body)
        doc.action_send_to_sii()
        self.assertEqual(doc.state, 'to_send')

    # --- SII transport against dte_native's simulator (real HTTP on 127.0.0.1) --------------

    def test_send_and_poll_simulator(self):
        self._start_simulator()
        doc = self._invoice('33').l10n_cl_dte_document_id
        doc.action_send_to_sii()
        Document = self.env['l10n_cl_dte.document']
        self.assertEqual(Document._cron_send(), 1)
        self.assertEqual(doc.state, 'sent', doc.exchange_ids.mapped('summary'))
        self.assertTrue(doc.track_id)
        doc.next_poll = False
        self.assertEqual(Document._cron_poll_status(), 1)
        self.assertEqual(doc.state, 'accepted', doc.exchange_ids.mapped('summary'))
        self.assertEqual(doc.exchange_ids.sorted('id').mapped('operation'), ['upload', 'status'])
        self.assertTrue(all(doc.exchange_ids.mapped('success')))

    def _send_until_final(self, doc):
        Document = self.env['l10n_cl_dte.document']
        doc.action_send_to_sii()
        Document._cron_send()
        self.assertEqual(doc.state, 'sent', doc.exchange_ids.mapped('summary'))
        doc.next_poll = False
        Document._cron_poll_status()
        return doc.state

    def test_credit_note_against_accepted_invoice_simulator(self):
        # The simulator checks, as SII does, that a note's referenced DTE was already accepted.
        self._start_simulator()
        invoice = self._invoice('33')
        self.assertEqual(self._send_until_final(invoice.l10n_cl_dte_document_id), 'accepted')
        reversal = self.env['account.move.reversal'].with_context(
            active_model='account.move', active_ids=invoice.ids).create({
                'reason': 'Devolucion', 'journal_id': self.journal.id, 'date': invoice.invoice_date})
        refund = self.env['account.move'].browse(reversal.refund_moves()['res_id'])
        refund.l10n_latam_document_type_id = self.env.ref('l10n_cl.dc_nc_f_dte')
        refund.action_post()
        note = refund.l10n_cl_dte_document_id
        self.assertEqual(self._send_until_final(note), 'accepted', note.exchange_ids.mapped('summary'))

    def test_boleta_send_simulator(self):
        self._start_simulator()
        boleta = self._invoice('39', partner=self.consumer, lines=[
            {'name': 'Pan amasado', 'quantity': 2, 'price_unit': 1000}])
        doc = boleta.l10n_cl_dte_document_id
        self.assertEqual(self._send_until_final(doc), 'accepted', doc.exchange_ids.mapped('summary'))

    def test_rejection_and_resend_simulator(self):
        simulator = self._start_simulator(reject_share=1.0)
        doc = self._invoice('33').l10n_cl_dte_document_id
        Document = self.env['l10n_cl_dte.document']
        Document._cron_send()
        doc.next_poll = False
        Document._cron_poll_status()
        self.assertEqual(doc.state, 'rejected', doc.exchange_ids.mapped('summary'))
        self.assertTrue(doc.sii_message)
        # The user corrects and sends again: back to to_send, then through the cron.
        simulator.configure(reject_share=0.0)
        doc.move_id.action_l10n_cl_dte_send()
        self.assertEqual(doc.state, 'to_send')

    def test_send_and_print_queues_dte(self):
        invoice = self._invoice('33')
        extra = self.env['account.move.send']._get_all_extra_edis()['l10n_cl_dte']
        self.assertTrue(extra['is_applicable'](invoice))
        cron = self.env.ref('l10n_cl_dte.ir_cron_l10n_cl_dte_send')
        triggers = self.env['ir.cron.trigger'].search_count([('cron_id', '=', cron.id)])
        self.env['account.move.send']._generate_and_send_invoices(
            invoice, sending_methods=['manual'], extra_edis={'l10n_cl_dte'})
        self.assertTrue(invoice.invoice_pdf_report_id)
        self.assertEqual(invoice.l10n_cl_dte_state, 'to_send')
        self.assertGreater(self.env['ir.cron.trigger'].search_count([('cron_id', '=', cron.id)]), triggers)

    def test_multi_company_isolation(self):
        other = self.env['res.company'].create({'name': 'Otra Empresa', 'country_id': self.env.ref('base.cl').id})
        self.env.user.company_ids |= other
        only_other = {'allowed_company_ids': other.ids}
        self.assertFalse(self.env['l10n_cl_dte.caf'].with_context(**only_other).search([]))
        self.assertFalse(self.env['l10n_cl_dte.certificate'].with_context(**only_other).search([]))
        self.assertFalse(self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(other))
        self.assertTrue(self.env['l10n_cl_dte.caf'].with_context(allowed_company_ids=self.company.ids).search([]))

    # --- security --------------------------------------------------------------------------

    def test_access_rights(self):
        invoicing_user = self.env['res.users'].create({
            'name': 'Invoicing only', 'login': 'dte_invoicing_user',
            'group_ids': [(6, 0, [self.env.ref('account.group_account_invoice').id])],
            'company_id': self.company.id, 'company_ids': [(6, 0, self.company.ids)],
        })
        dte_manager = self.env['res.users'].create({
            'name': 'DTE manager', 'login': 'dte_manager_user',
            'group_ids': [(6, 0, [self.env.ref('l10n_cl_dte.group_dte_manager').id])],
            'company_id': self.company.id, 'company_ids': [(6, 0, self.company.ids)],
        })
        with mute_logger('odoo.models'), self.assertRaises(AccessError):
            self.certificate.with_user(invoicing_user).read(['signer_rut'])
        with mute_logger('odoo.models'), self.assertRaises(AccessError):
            self.cafs[33].with_user(invoicing_user).read(['folio_from'])
        # A DTE manager sees the certificate's public data but never its secrets.
        self.assertEqual(self.certificate.with_user(dte_manager).signer_rut, self.kit.signer_rut)
        with self.assertRaises(AccessError):
            self.certificate.with_user(dte_manager).read(['p12_cipher'])
        with self.assertRaises(AccessError):
            self.cafs[33].with_user(dte_manager).read(['caf_cipher'])
        # Upload fields read back empty.
        self.assertFalse(self.certificate.with_user(dte_manager).p12_file)
        # An invoicing user still posts DTEs (signing runs as superuser).
        move = self._invoice('33', post=False).with_user(invoicing_user)
        move.action_post()
        self.assertEqual(move.sudo().l10n_cl_dte_document_id.folio, 1)


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestL10nClDteTour(L10nClDteCommon, HttpCase):
    """A browser opens a posted invoice and clicks "Send to SII"."""

    def test_send_to_sii_tour(self):
        invoice = self._invoice('33')
        cron = self.env.ref('l10n_cl_dte.ir_cron_l10n_cl_dte_send')
        before = self.env['ir.cron.trigger'].search_count([('cron_id', '=', cron.id)])
        self.env.user.group_ids |= self.env.ref('base.group_user')
        self.start_tour('/odoo/action-account.action_move_out_invoice_type/%s' % invoice.id,
                        'l10n_cl_dte_send_to_sii', login=self.env.user.login)
        self.assertGreater(self.env['ir.cron.trigger'].search_count([('cron_id', '=', cron.id)]), before)
