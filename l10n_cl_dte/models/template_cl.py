from odoo import models
from odoo.addons.account.models.chart_template import template

# SII codes of the Chilean chart's tax groups (IVA 14, retentions 15).
_TAX_GROUP_SII_CODES = {
    'tax_group_iva_19': 14,
    'tax_group_retenciones': 15,
}


class AccountChartTemplate(models.AbstractModel):
    _inherit = 'account.chart.template'

    @template('cl', 'account.tax.group')
    def _get_cl_dte_account_tax_group(self):
        return {xmlid: {'l10n_cl_sii_code': code} for xmlid, code in _TAX_GROUP_SII_CODES.items()}

    def _l10n_cl_dte_tag_tax_groups(self):
        for xmlid, code in _TAX_GROUP_SII_CODES.items():
            group = self.ref(xmlid, raise_if_not_found=False)
            if group:
                group.l10n_cl_sii_code = code
