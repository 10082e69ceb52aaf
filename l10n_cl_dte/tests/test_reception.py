"""Reception of suppliers' DTEs with real components: a Dovecot IMAP server on loopback
(dte_native.testkit.DovecotServer, shared with tests/python/test_reception.py), an aiosmtpd
SMTP sink receiving the answers, and dte_native's SII simulator over real HTTP."""
import copy
import datetime
import email.policy
import os
import shutil
import tempfile
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path

import dte_native
from dte_native import reception, testkit

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from .test_l10n_cl_dte import ISSUER_RUT, L10nClDteCommon

SUPPLIER_RUT = '76086428-5'
SUPPLIER_SIGNER = '12345678-5'
OTHER_RUT = '96790240-3'  # a receiver that is not the company
SISTER_RUT = '77123456-9'  # another company of the database
class Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return '250 OK'


def mail(attachments, subject='Envio de DTE'):
    """Built with Python's email package (not our GMime builder): multipart/alternative + base64."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg['From'] = 'Proveedor <dte@proveedor.cl>'
    msg['Reply-To'] = 'intercambio@proveedor.cl'
    msg['To'] = 'recepcion@empresa.cl'
    msg['Subject'] = subject
    msg.set_content('Adjuntamos DTE.\nSaludos, Compania')
    msg.add_alternative('<p>Adjuntamos DTE</p>', subtype='html')
    for name, data in attachments:
        msg.add_attachment(data, maintype='application', subtype='xml', filename=name)
    return msg.as_bytes()


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestL10nClDteReception(L10nClDteCommon):
    """Suppliers' DTEs from IMAP to draft bills; answers to the supplier (SMTP) and SII."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.supplier_cert = dte_native.Certificate.from_pkcs12(
            testkit.make_certificate(SUPPLIER_SIGNER, 'pw').p12, 'pw')
        cls.supplier_cafs = {
            t: dte_native.Caf.parse(testkit.make_caf(SUPPLIER_RUT, t, cls.sii_private_pem, folio_from=1, folio_to=50))
            for t in (33, 56, 61)}
        cls.company.write({'l10n_cl_dte_imap_user': 'recepcion', 'l10n_cl_dte_imap_password': 'secreto',
                           'l10n_cl_dte_reception_email': 'recepcion@empresa.cl'})
        cls.purchase_journal = cls.company_data['default_journal_purchase']
        cls.purchase_journal.l10n_latam_use_documents = True
        cls.vat_purchase = cls.env['account.chart.template'].ref('OTAX_19')
        cls.Incoming = cls.env['l10n_cl_dte.incoming']

    def setUp(self):
        super().setUp()
        self.folio = 0

    # --- the supplier's side ---------------------------------------------------------------

    def _supplier_dte(self, doc_type=33, receiver=ISSUER_RUT, references=None, lines=None, caf=None):
        self.folio += 1
        doc = copy.deepcopy(dte_native.example(33))
        doc['Encabezado']['IdDoc'] = {'TipoDTE': doc_type, 'Folio': self.folio, 'FchVenc': '2050-12-31'}
        doc['Encabezado']['Emisor']['RUTEmisor'] = SUPPLIER_RUT
        doc['Encabezado']['Emisor']['RznSoc'] = 'Proveedora Andina SpA'
        doc['Encabezado']['Receptor']['RUTRecep'] = receiver
        if lines is not None:
            doc['Detalle'] = lines
            doc.pop('DscRcgGlobal', None)
        if references is not None:
            doc['Referencia'] = references
        return dte_native.sign(doc, caf or self.supplier_cafs[doc_type], self.supplier_cert,
                               keyring=self.kit.keyring(), verify_caf=caf is None)

    def _envelope(self, *signed, receiver=ISSUER_RUT):
        return dte_native.envelope(list(signed), self.supplier_cert, receiver=receiver, resolution_date='2014-08-22')

    def _dte_user(self):
        """Someone with the DTE User group only (no manager rights, no certificate access)."""
        return self.env['res.users'].create({
            'name': 'DTE user', 'login': 'dte_reception_user',
            'group_ids': [(6, 0, [self.env.ref('l10n_cl_dte.group_dte_user').id])],
            'company_id': self.company.id, 'company_ids': [(6, 0, self.company.ids)]})

    # --- real servers ----------------------------------------------------------------------

    def _dovecot(self):
        try:
            server = testkit.DovecotServer()
        except FileNotFoundError as e:
            self.skipTest(str(e))
        self.addCleanup(server.stop)
        self.company.l10n_cl_dte_imap_url = server.url
        return server

    def _smtp_sink(self):
        try:
            from aiosmtpd.controller import Controller  # noqa: PLC0415
        except ImportError:
            self.skipTest('aiosmtpd not installed (requirements-dev.txt)')
        sink, port = Sink(), testkit.free_port()
        controller = Controller(sink, hostname='127.0.0.1', port=port)
        controller.start()
        self.addCleanup(controller.stop)
        self.company.write({'l10n_cl_dte_smtp_host': '127.0.0.1', 'l10n_cl_dte_smtp_port': port,
                            'l10n_cl_dte_smtp_security': 'none'})
        return sink

    # --- tests -----------------------------------------------------------------------------

    def test_inbox_to_draft_bills(self):
        server = self._dovecot()
        invoice_dte = self._supplier_dte()
        valid = self._envelope(invoice_dte)
        tampered = self._envelope(self._supplier_dte()).replace(b'<MntTotal>', b'<MntTotal>1', 1)
        wrong_receiver = self._envelope(self._supplier_dte(receiver=OTHER_RUT), receiver=OTHER_RUT)
        server.deliver(mail([('ENVIO_DTE_1.xml', valid)]))
        server.deliver(mail([('ENVIO_DTE_2.xml', tampered)]))
        server.deliver(mail([('ENVIO_DTE_3.xml', wrong_receiver)]))
        server.deliver(b'\x00\x01garbage\r\n\r\n--')

        self.assertEqual(self.Incoming._cron_fetch_inbox(), 4)
        records = self.Incoming.search([('company_id', '=', self.company.id)], order='id')
        self.assertEqual(records.mapped('state'), ['verified', 'failed', 'failed', 'failed'],
                         records.mapped('failure_reason'))
        good, bad_sig, bad_rut, broken = records

        # The valid DTE: a draft bill with the supplier (created from the DTE), lines and taxes.
        self.assertEqual((good.doc_type, good.folio, good.issuer_rut, good.amount_total),
                         (33, invoice_dte.folio, SUPPLIER_RUT, invoice_dte.total))
        self.assertTrue(good.xml_file and good.mail_file)
        self.assertEqual(good.reply_to, 'intercambio@proveedor.cl')
        self.assertTrue(good.check_ids and all(c.status == 'pass' for c in good.check_ids if c.status != 'skip'))
        self.assertTrue({'schema', 'envelope.signature', 'dte.signature', 'ted.caf', 'receiver.rut'}
                        <= set(good.check_ids.mapped('name')))
        self.assertEqual(good.deadline, good.received_at + datetime.timedelta(days=8))
        self.assertTrue(good.activity_ids, 'a reminder to accept or claim within 8 days')
        bill = good.move_id
        self.assertEqual((bill.move_type, bill.state, bill.journal_id), ('in_invoice', 'draft', self.purchase_journal))
        self.assertEqual(bill.l10n_latam_document_type_id.code, '33')
        self.assertEqual(int(bill.l10n_latam_document_number), invoice_dte.folio)
        partner = bill.partner_id
        self.assertEqual((partner.vat, partner.name, partner.l10n_cl_sii_taxpayer_type),
                         (SUPPLIER_RUT, 'Proveedora Andina SpA', '1'))
        lines = bill.invoice_line_ids.sorted('sequence')
        self.assertEqual(len(lines), 4)  # three items and the 2 % global discount
        oil, paper, freight, discount = lines
        self.assertEqual((oil.quantity, oil.price_unit, oil.discount, oil.price_subtotal), (24, 6490, 5, 147972))
        self.assertEqual(oil.tax_ids, self.vat_purchase)
        self.assertEqual(paper.tax_ids, self.vat_purchase)
        self.assertFalse(freight.tax_ids, 'IndExe line: exempt')
        self.assertEqual(discount.price_subtotal, -4693)
        self.assertEqual(bill.amount_total, invoice_dte.total)
        self.assertEqual(bill.l10n_cl_reference_ids.mapped('origin_doc_number'), ['OC-2291'])
        self.assertTrue(bill.message_ids.attachment_ids.filtered(lambda a: a.name.endswith('.xml')))
        self.assertEqual(bill.action_l10n_cl_dte_open_incoming()['res_id'], good.id)

        # Failures: quarantined with their reasons, no bill.
        self.assertFalse((bad_sig | bad_rut | broken).move_id)
        self.assertTrue(bad_sig.check_ids.filtered(lambda c: c.status == 'fail'))
        self.assertIn('RUT', bad_rut.failure_reason)
        self.assertIn('receiver.rut', bad_rut.check_ids.filtered(lambda c: c.status == 'fail').mapped('name'))
        self.assertTrue(broken.failure_reason and broken.mail_file)
        self.assertFalse(broken.doc_type)

        # Nothing is processed twice; only new mail is read, and a re-sent DTE is a duplicate.
        self.assertEqual(self.Incoming._cron_fetch_inbox(), 0)
        self.assertEqual(self.company.l10n_cl_dte_imap_state['last_uid'], 4)
        credit_note = self._supplier_dte(61, lines=[{'NmbItem': 'Devolucion aceite', 'QtyItem': 2, 'PrcItem': 6165.5}],
                                         references=[{'TpoDocRef': '33', 'FolioRef': str(invoice_dte.folio),
                                                      'FchRef': invoice_dte.issue_date, 'CodRef': 3,
                                                      'RazonRef': 'Devolucion parcial'}])
        debit_note = self._supplier_dte(56, lines=[{'NmbItem': 'Intereses', 'QtyItem': 1, 'PrcItem': 1000}],
                                        references=[{'TpoDocRef': '33', 'FolioRef': str(invoice_dte.folio),
                                                     'FchRef': invoice_dte.issue_date, 'CodRef': 3,
                                                     'RazonRef': 'Intereses por mora'}])
        server.deliver(mail([('ENVIO_DTE_1.xml', valid)]))
        server.deliver(mail([('NC.xml', self._envelope(credit_note)), ('ND.xml', self._envelope(debit_note))]))
        # One mailbox shared with another company of the database: its DTEs go to it.
        sister = self.env['res.company'].create({
            'name': 'Filial Sur SpA', 'vat': SISTER_RUT, 'country_id': self.env.ref('base.cl').id})
        server.deliver(mail([('FILIAL.xml', self._envelope(self._supplier_dte(receiver=SISTER_RUT),
                                                            receiver=SISTER_RUT))]))
        self.assertEqual(self.Incoming._cron_fetch_inbox(), 3)
        routed = self.Incoming.search([('company_id', '=', sister.id)])
        self.assertEqual((routed.state, routed.receiver_rut), ('verified', SISTER_RUT), routed.failure_reason)
        new = self.Incoming.search([('id', '>', broken.id), ('company_id', '=', self.company.id)], order='id')
        self.assertEqual(new.mapped('state'), ['failed', 'verified', 'verified'], new.mapped('failure_reason'))
        self.assertIn('duplicate', new[0].failure_reason)
        self.assertEqual(self.env['account.move'].search_count([('partner_id', '=', partner.id)]), 3)
        refund, debit = new[1].move_id, new[2].move_id
        self.assertEqual((refund.move_type, refund.reversed_entry_id), ('in_refund', bill))
        self.assertEqual(refund.partner_id, partner)
        self.assertEqual(refund.amount_total, credit_note.total)
        self.assertEqual((debit.move_type, debit.debit_origin_id), ('in_invoice', bill))
        self.assertEqual(debit.l10n_latam_document_type_id.code, '56')
        self.assertEqual(refund.l10n_cl_reference_ids.l10n_cl_reference_doc_type_id.code, '33')

    def test_accept_claim_and_deemed_acceptance(self):
        simulator = self._start_simulator()
        sink = self._smtp_sink()
        docs = [self._supplier_dte() for _ in range(5)]
        # The supplier uploaded its DTEs to SII (the simulator; all but the third) and mailed them to us.
        from dte_native import sii  # noqa: PLC0415
        supplier_sii = sii.SiiClient(self.supplier_cert, sii.ClientConfig(
            'simulator', base_url=simulator.url, timeout_s=5.0, max_attempts=2))
        supplier_sii.upload(dte_native.envelope([docs[0], docs[1], docs[3], docs[4]], self.supplier_cert,
                                                resolution_date='2014-08-22'))
        records = self.Incoming._store_message(self.company, 1, 1, mail([('ENVIO.xml', self._envelope(*docs))]))
        self.assertEqual(records.mapped('state'), ['verified'] * 5, records.mapped('failure_reason'))
        accepted, claimed, deemed, receipt, retried = records

        accepted.with_user(self._dte_user()).action_accept()
        self.assertEqual((accepted.state, accepted.sii_action), ('accepted', 'ACD'))
        self.assertIn('SII ACD: 0', accepted.sii_message)
        self.assertFalse(accepted.activity_ids, 'the reminder is done once answered')
        self.assertEqual(len(sink.messages), 1)
        _, rcpts, raw = sink.messages[-1]
        self.assertEqual(rcpts, ['intercambio@proveedor.cl'])
        back = reception.process_message(raw, company_rut=SUPPLIER_RUT, keyring=self.kit.keyring())
        self.assertEqual([(i.kind, i.status) for i in back.items], [('RespuestaDTE', 'answer')])
        self.assertIn(b'<EstadoDTE>0</EstadoDTE>', back.items[0].xml)
        # Accepted: SII refuses a claim (codResp 11) and nothing changes.
        with self.assertRaisesRegex(UserError, 'SII refused RCD'):
            accepted._answer('RCD', 'Precio')
        self.assertEqual(accepted.state, 'accepted')
        # ... but takes the receipt of goods (ERM): EnvioRecibos with the legal declaration.
        accepted.action_receipt()
        recibos = reception.process_message(sink.messages[-1][2], company_rut=SUPPLIER_RUT, keyring=self.kit.keyring())
        self.assertEqual([i.kind for i in recibos.items], ['EnvioRecibos'])
        self.assertIn(reception.RECIBO_DECLARACION.encode(), recibos.items[0].xml)

        wizard = self.env['l10n_cl_dte.incoming.claim'].create({
            'incoming_ids': [(6, 0, claimed.ids)], 'action': 'RFT', 'reason': 'Mercaderia no llego'})
        wizard.action_claim()
        self.assertEqual((claimed.state, claimed.sii_action), ('claimed', 'RFT'))
        rejection = reception.process_message(sink.messages[-1][2], company_rut=SUPPLIER_RUT, keyring=self.kit.keyring())
        self.assertIn(b'<EstadoDTE>2</EstadoDTE>', rejection.items[0].xml)
        self.assertIn(b'Mercaderia no llego', rejection.items[0].xml)
        self.assertIn('Mercaderia no llego', claimed.message_ids[0].body + claimed.message_ids[1].body)
        with self.assertRaisesRegex(UserError, 'reason'):
            self.env['l10n_cl_dte.incoming.claim'].create({
                'incoming_ids': [(6, 0, receipt.ids)], 'action': 'RCD', 'reason': ' '}).action_claim()

        # The mail server is down: registered at SII, but nothing is recorded here (the request
        # rolls back); pressing again is safe, SII answers "already registered" (codResp 7).
        port = self.company.l10n_cl_dte_smtp_port
        self.company.l10n_cl_dte_smtp_port = testkit.free_port()
        with self.assertRaisesRegex(UserError, 'could not be mailed'):
            retried.action_accept()
        self.assertEqual(retried.state, 'verified')
        self.company.l10n_cl_dte_smtp_port = port
        retried.action_accept()
        self.assertEqual(retried.state, 'accepted')
        self.assertIn('SII ACD: 7', retried.sii_message)

        receipt.action_acknowledge_reception()
        ack = reception.process_message(sink.messages[-1][2], company_rut=SUPPLIER_RUT, keyring=self.kit.keyring())
        self.assertIn(b'RecepcionEnvio', ack.items[0].xml)

        # Eight days without an answer: deemed accepted, said plainly. SII's reception timestamp
        # decides when SII has one: received there today, the window is still open.
        past = fields.Datetime.subtract(fields.Datetime.now(), minutes=1)
        (deemed | receipt).deadline = past
        self.assertEqual(self.Incoming._cron_deemed_accepted(), 1)
        self.assertEqual(deemed.state, 'deemed_accepted')
        self.assertIn('deemed received', deemed.message_ids[0].body)
        self.assertFalse(deemed.activity_ids)
        with self.assertRaisesRegex(UserError, 'cannot be answered'):
            deemed.action_accept()
        self.assertEqual(receipt.state, 'verified')
        self.assertGreater(receipt.deadline, fields.Datetime.add(fields.Datetime.now(), days=7))
        # Nine days later SII refuses any action (codResp 8): the document is deemed accepted.
        sent = len(sink.messages)
        simulator.advance_clock(9 * 86400)
        self.assertFalse(receipt._answer('ACD'))
        self.assertEqual(receipt.state, 'deemed_accepted')
        self.assertIn('more than 8 days', receipt.message_ids[0].body)
        self.assertEqual(len(sink.messages), sent, 'nothing is mailed for a refused action')

    def test_verify_again_after_trusting_a_key(self):
        # A CAF signed by an SII key this database does not trust yet: failed, no bill.
        new_sii = testkit.make_rsa_key()
        caf = dte_native.Caf.parse(testkit.make_caf(SUPPLIER_RUT, 33, new_sii.private_pem, folio_from=100,
                                                    folio_to=110, idk=300))
        self.folio = 99
        raw = mail([('ENVIO.xml', self._envelope(self._supplier_dte(caf=caf)))])
        rec = self.Incoming._store_message(self.company, 7, 1, raw)
        self.assertEqual(rec.state, 'failed')
        self.assertIn('ted.caf', rec.failure_reason)
        self.assertFalse(rec.move_id)
        # The administrator trusts that key: verifying again makes the bill.
        keys = Path(tempfile.mkdtemp(prefix='l10n_cl_dte_keys_'))
        self.addCleanup(shutil.rmtree, keys, True)
        (keys / '300.pem').write_text(new_sii.public_pem)
        self.env['ir.config_parameter'].sudo().set_param(
            'l10n_cl_dte.trusted_sii_key_dirs', os.pathsep.join([str(self.kit.sii_keys_dir), str(keys)]))
        rec.with_user(self._dte_user()).action_verify_again()
        self.assertEqual(rec.state, 'verified', rec.failure_reason)
        self.assertEqual(rec.move_id.amount_total, rec.amount_total)
        self.assertIn('Verification run again', ' '.join(rec.message_ids.mapped('body')))

    def test_one_worker_per_inbox(self):
        # Another worker (a connection of its own) holds this company's inbox: nothing is read.
        from odoo import sql_db  # noqa: PLC0415
        from ..models.l10n_cl_dte_incoming import _INBOX_LOCK_CLASS  # noqa: PLC0415
        with closing(sql_db.db_connect(self.env.cr.dbname).cursor()) as other:
            other.execute('SELECT pg_try_advisory_xact_lock(%s, %s)', (_INBOX_LOCK_CLASS, self.company.id))
            self.assertTrue(other.fetchone()[0])
            self.company.l10n_cl_dte_imap_url = 'imap://127.0.0.1:1/INBOX'  # would fail if contacted
            self.assertEqual(self.Incoming._fetch_company_inbox(self.company), 0)
            other.rollback()
        # The manual "Fetch inbox now" wakes the cron.
        cron = self.env.ref('l10n_cl_dte.ir_cron_l10n_cl_dte_fetch_inbox')
        before = self.env['ir.cron.trigger'].search_count([('cron_id', '=', cron.id)])
        self.Incoming.action_fetch_inbox()
        self.assertGreater(self.env['ir.cron.trigger'].search_count([('cron_id', '=', cron.id)]), before)
        # An unreachable mailbox is logged; the cron goes on with the other companies.
        with self.assertLogs('odoo.addons.l10n_cl_dte.models.l10n_cl_dte_incoming', level='WARNING'):
            self.assertEqual(self.Incoming._cron_fetch_inbox(), 0)

    def test_mail_passwords_encrypted(self):
        company = self.company.sudo()
        self.assertTrue(company.l10n_cl_dte_imap_password_cipher)
        self.assertNotIn('secreto', company.l10n_cl_dte_imap_password_cipher)
        self.assertFalse(company.l10n_cl_dte_imap_password, 'write-only')
        self.assertEqual(company._l10n_cl_dte_secret('l10n_cl_dte_imap_password_cipher'), 'secreto')
        # Saving settings without touching the password keeps it.
        self.env['res.config.settings'].create({'l10n_cl_dte_imap_user': 'otro'}).execute()
        self.assertEqual(company._l10n_cl_dte_secret('l10n_cl_dte_imap_password_cipher'), 'secreto')
