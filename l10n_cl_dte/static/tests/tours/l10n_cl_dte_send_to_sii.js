import { registry } from "@web/core/registry";

// Opens a posted Chilean invoice whose DTE waits to be sent and clicks "Send to SII".
registry.category("web_tour.tours").add("l10n_cl_dte_send_to_sii", {
    steps: () => [
        {
            content: "A posted invoice",
            trigger: ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains('Posted')",
        },
        {
            content: "Send it to SII",
            trigger: "button[name='action_l10n_cl_dte_send']",
            run: "click",
        },
        {
            content: "The user gets control back at once: the DTE is queued",
            trigger: ".o_notification:contains('queued')",
        },
    ],
});
