from odoo import api, fields, models
from odoo.exceptions import ValidationError


class ResCompany(models.Model):
    _inherit = 'res.company'

    l10n_cl_dte_environment = fields.Selection(
        [('simulator', 'Simulator'), ('certification', 'SII certification (maullin)'),
         ('production', 'SII production (palena)')],
        string='SII Environment', default='simulator', required=True,
        help='Where DTEs are sent. The simulator is dte_native\'s local SII stand-in.')
    l10n_cl_dte_simulator_url = fields.Char(
        'Simulator URL', default='http://127.0.0.1:8765',
        help='Base URL of the dte_native SII simulator (dte simulator).')
    l10n_cl_dte_resolution_number = fields.Integer(
        'SII Resolution Number', help='Number of the SII resolution that authorizes electronic invoicing '
                                      '(0 in certification).')
    l10n_cl_dte_resolution_date = fields.Date('SII Resolution Date')
    l10n_cl_dte_acteco_codes = fields.Char(
        'Economic Activity Codes (Acteco)',
        help='Up to 4 SII economic activity codes of the company, separated by commas, e.g. 463020,466901.')
    l10n_cl_sii_regional_office = fields.Char(
        'SII Regional Office', help='Printed in the SII box of documents, e.g. SANTIAGO ORIENTE.')
    l10n_cl_dte_email = fields.Char(
        'DTE Exchange Email', help='Address printed on DTEs and used to exchange documents with receivers.')
    l10n_cl_dte_reception_email = fields.Char(
        'DTE Reception Email', help='Mailbox registered at SII where suppliers send their DTEs.')
    l10n_cl_dte_certificate_id = fields.Many2one(
        'l10n_cl_dte.certificate', compute='_compute_l10n_cl_dte_certificate_id', string='Signing Certificate')

    def _compute_l10n_cl_dte_certificate_id(self):
        certificates = self.env['l10n_cl_dte.certificate'].sudo()
        for company in self:
            company.l10n_cl_dte_certificate_id = certificates._l10n_cl_dte_for_company(company)

    def _l10n_cl_dte_acteco_list(self):
        self.ensure_one()
        codes = [c.strip() for c in (self.l10n_cl_dte_acteco_codes or '').replace(';', ',').split(',')]
        return [int(c) for c in codes if c.isdigit()]

    @api.constrains('l10n_cl_dte_acteco_codes')
    def _check_l10n_cl_dte_acteco_codes(self):
        for company in self:
            codes = [c.strip() for c in (company.l10n_cl_dte_acteco_codes or '').replace(';', ',').split(',') if c.strip()]
            if len(codes) > 4 or any(not c.isdigit() or len(c) > 6 for c in codes):
                raise ValidationError(self.env._(
                    'Economic activity codes must be up to 4 numbers of at most 6 digits, separated by commas.'))
