from odoo import api, fields, models


class L10nClAccountInvoiceReference(models.Model):
    """A document an invoice refers to (SII <Referencia>): the invoice a credit note corrects, a
    purchase order, a dispatch guide... Community l10n_cl reads ``l10n_cl_reference_ids`` and
    ``l10n_cl_reference_doc_type_selection`` without defining them; they are defined here."""
    _name = 'l10n_cl.account.invoice.reference'
    _description = 'Chilean document reference'
    _rec_name = 'origin_doc_number'

    move_id = fields.Many2one('account.move', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='move_id.company_id', store=True)
    l10n_cl_reference_doc_type_id = fields.Many2one(
        'l10n_latam.document.type', string='Reference Doc Type', domain=[('country_id.code', '=', 'CL')])
    l10n_cl_reference_doc_type_selection = fields.Char(
        related='l10n_cl_reference_doc_type_id.code', string='Reference Doc Code')
    origin_doc_number = fields.Char('Origin Reference', required=True)
    reference_doc_code = fields.Selection(
        [('1', '1. Cancels referenced document'),
         ('2', '2. Corrects referenced document text'),
         ('3', '3. Corrects referenced document amount')],
        string='Reference Code (CodRef)')
    reason = fields.Char()
    date = fields.Date()

    @api.model
    def _l10n_cl_dte_values(self):
        """The SII <Referencia> of each record."""
        result = []
        for ref in self:
            values = {
                'TpoDocRef': ref.l10n_cl_reference_doc_type_id.code or 'SET',
                'FolioRef': ref.origin_doc_number,
            }
            if ref.date:
                values['FchRef'] = ref.date.isoformat()
            if ref.reference_doc_code:
                values['CodRef'] = int(ref.reference_doc_code)
            if ref.reason:
                values['RazonRef'] = ref.reason[:90]
            result.append(values)
        return result
