from odoo import fields, models


class AccountTaxGroup(models.Model):
    _inherit = 'account.tax.group'

    # Used by Community l10n_cl (_l10n_cl_get_invoice_totals_for_report) but defined only in
    # Enterprise: 14 marks the IVA group, which boletas and exempt documents leave out of totals.
    l10n_cl_sii_code = fields.Integer('SII Code', aggregator=False)
