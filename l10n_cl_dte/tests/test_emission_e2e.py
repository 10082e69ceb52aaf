from odoo import Command
from odoo.tests import tagged

from .test_emission_types import EmissionTypesCommon
from .test_l10n_cl_dte import TestL10nClDte


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestEmissionE2E(EmissionTypesCommon):
    """Guías, exports, facturas de compra, foreign-currency and additional-tax invoices go from
    posting through "Send to SII" (the cron path the button queues) to accepted by the simulator."""

    _send_until_final = TestL10nClDte._send_until_final

    def setUp(self):
        super().setUp()
        self._start_simulator()

    def _assert_accepted(self, move, doc_type):
        doc = move.l10n_cl_dte_document_id
        self.assertEqual(doc.doc_type, doc_type)
        state = self._send_until_final(doc)
        self.assertEqual(state, 'accepted', doc.exchange_ids.mapped('summary') + [doc.sii_message or ''])
        self.assertTrue(all(doc.exchange_ids.mapped('success')))
        return doc

    def test_guia_52(self):
        guia = self._move('52', self.partner, [
            {'name': 'Aceite de oliva 1 L', 'quantity': 48, 'price_unit': 6490, 'tax_ids': [Command.set(self.iva.ids)]},
        ], l10n_cl_dte_ind_traslado='1', l10n_cl_dte_tipo_despacho='2', l10n_cl_dte_vehicle_plate='KXBT42')
        self._assert_accepted(guia, 52)

    def test_export_110_and_notes_111_112(self):
        invoice = self._move('110', self.foreign, [
            {'name': 'Aceite de oliva extra virgen 1 L', 'quantity': 1200, 'price_unit': 9.75, 'tax_ids': False},
        ], currency_id=self.usd.id, invoice_incoterm_id=self.fob.id, l10n_cl_dte_transport_way='1',
            l10n_cl_dte_port_loading_code=906, l10n_cl_dte_port_unloading_code=345)
        self._assert_accepted(invoice, 110)
        reversal = self.env['account.move.reversal'].with_context(
            active_model='account.move', active_ids=invoice.ids).create({
                'reason': 'Devolucion', 'journal_id': self.journal.id, 'date': invoice.invoice_date})
        credit = self.env['account.move'].browse(reversal.refund_moves()['res_id'])
        credit.l10n_latam_document_type_id = self._doc_type('112')
        credit.action_post()
        self._assert_accepted(credit, 112)
        # A debit note (111) against the export invoice, referenced by hand (CodRef 3: amounts).
        debit = self._move('111', self.foreign, [
            {'name': 'Flete adicional', 'quantity': 1, 'price_unit': 150.0, 'tax_ids': False},
        ], currency_id=self.usd.id, invoice_incoterm_id=self.fob.id, l10n_cl_dte_transport_way='1',
            l10n_cl_dte_port_loading_code=906, l10n_cl_dte_port_unloading_code=345,
            l10n_cl_reference_ids=[Command.create({
                'l10n_cl_reference_doc_type_id': self._doc_type('110').id,
                'origin_doc_number': invoice.l10n_latam_document_number, 'date': invoice.invoice_date,
                'reference_doc_code': '3', 'reason': 'Flete no facturado'})])
        self.assertEqual(debit._l10n_cl_dte_references()[0]['TpoDocRef'], '110')
        self._assert_accepted(debit, 111)

    def test_factura_compra_46(self):
        bill = self._move('46', self.vendor, [
            {'name': 'Chatarra de cobre', 'quantity': 350, 'price_unit': 4200,
             'tax_ids': [Command.set((self.ref_tax('OTAX_19') | self.ref_tax('I_RTI')).ids)]},
        ], journal=self.purchase_journal, move_type='in_invoice')
        self._assert_accepted(bill, 46)

    def test_invoice_33_in_dollars(self):
        invoice = self._move('33', self.partner, [
            {'name': 'Consultoria', 'quantity': 3, 'price_unit': 120.5, 'tax_ids': [Command.set(self.iva.ids)]},
        ], currency_id=self.usd.id)
        self._assert_accepted(invoice, 33)

    def test_invoice_33_with_ila(self):
        invoice = self._move('33', self.partner, [
            {'name': 'Bebida cola 3 L', 'quantity': 10, 'price_unit': 1500,
             'tax_ids': [Command.set((self.iva | self.ref_tax('ila_a_180_s')).ids)]},
            {'name': 'Vino tinto reserva', 'quantity': 6, 'price_unit': 5000,
             'tax_ids': [Command.set((self.iva | self.ref_tax('ila_v_205_s')).ids)]},
        ])
        self._assert_accepted(invoice, 33)
