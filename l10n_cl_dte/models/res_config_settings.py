from odoo import fields, models


class ResConfigSettings(models.TransientModel):
    _inherit = 'res.config.settings'

    l10n_cl_dte_environment = fields.Selection(related='company_id.l10n_cl_dte_environment', readonly=False)
    l10n_cl_dte_setup_html = fields.Html(related='company_id.l10n_cl_dte_setup_html')
    l10n_cl_dte_setup_done = fields.Boolean(related='company_id.l10n_cl_dte_setup_done')
    l10n_cl_dte_simulator_url = fields.Char(related='company_id.l10n_cl_dte_simulator_url', readonly=False)
    l10n_cl_dte_resolution_number = fields.Integer(related='company_id.l10n_cl_dte_resolution_number', readonly=False)
    l10n_cl_dte_resolution_date = fields.Date(related='company_id.l10n_cl_dte_resolution_date', readonly=False)
    l10n_cl_dte_acteco_codes = fields.Char(related='company_id.l10n_cl_dte_acteco_codes', readonly=False)
    l10n_cl_sii_regional_office = fields.Char(related='company_id.l10n_cl_sii_regional_office', readonly=False)
    l10n_cl_dte_email = fields.Char(related='company_id.l10n_cl_dte_email', readonly=False)
    l10n_cl_dte_reception_email = fields.Char(related='company_id.l10n_cl_dte_reception_email', readonly=False)
    l10n_cl_dte_imap_url = fields.Char(related='company_id.l10n_cl_dte_imap_url', readonly=False)
    l10n_cl_dte_imap_user = fields.Char(related='company_id.l10n_cl_dte_imap_user', readonly=False)
    l10n_cl_dte_imap_password = fields.Char(related='company_id.l10n_cl_dte_imap_password', readonly=False)
    l10n_cl_dte_smtp_host = fields.Char(related='company_id.l10n_cl_dte_smtp_host', readonly=False)
    l10n_cl_dte_smtp_port = fields.Integer(related='company_id.l10n_cl_dte_smtp_port', readonly=False)
    l10n_cl_dte_smtp_security = fields.Selection(related='company_id.l10n_cl_dte_smtp_security', readonly=False)
    l10n_cl_dte_smtp_user = fields.Char(related='company_id.l10n_cl_dte_smtp_user', readonly=False)
    l10n_cl_dte_smtp_password = fields.Char(related='company_id.l10n_cl_dte_smtp_password', readonly=False)
    l10n_cl_dte_trusted_key_dirs = fields.Char(
        'Extra trusted SII key folders', config_parameter='l10n_cl_dte.trusted_sii_key_dirs',
        help='Folders (separated by the OS path separator) with extra CAF-signing keys <IDK>.pem to trust, '
             'e.g. a test SII key. The keys shipped with dte_native are always trusted.')
