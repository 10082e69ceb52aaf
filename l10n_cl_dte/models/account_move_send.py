from odoo import api, models


class AccountMoveSend(models.AbstractModel):
    _inherit = 'account.move.send'

    @api.model
    def _get_all_extra_edis(self) -> dict:
        res = super()._get_all_extra_edis()
        res['l10n_cl_dte'] = {
            'label': self.env._('Send to SII'),
            'is_applicable': lambda move: bool(move.l10n_cl_dte_document_ids.filtered(
                lambda d: d.state in ('to_send', 'rejected'))),
            'help': self.env._('Queue the DTE for sending to SII (done in the background).'),
        }
        return res

    def _call_web_service_after_invoice_pdf_render(self, invoices_data):
        res = super()._call_web_service_after_invoice_pdf_render(invoices_data)
        for invoice, invoice_data in invoices_data.items():
            if 'l10n_cl_dte' in invoice_data.get('extra_edis', ()):
                invoice.l10n_cl_dte_document_ids.filtered(
                    lambda d: d.state in ('to_send', 'rejected')).action_send_to_sii()
        return res
