import { registry } from "@web/core/registry";

async function callKw(model, method, args, kwargs = {}) {
    const response = await fetch(`/web/dataset/call_kw/${model}/${method}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", method: "call", params: { model, method, args, kwargs } }),
    });
    const data = await response.json();
    if (data.error) {
        throw new Error(JSON.stringify(data.error));
    }
    return data.result;
}

// The batch monitor shows a batch waiting, then its progress changes without reloading the page.
registry.category("web_tour.tours").add("l10n_cl_dte_batch_monitor", {
    steps: () => [
        {
            content: "The batch is listed, nothing done yet",
            trigger: ".o_l10n_cl_dte_batch_monitor tr:contains('Tour batch') .o_dte_batch_progress[data-state='queued']:contains('0%')",
        },
        {
            content: "SII accepts its document (as a worker's webhook would report)",
            trigger: ".o_l10n_cl_dte_batch_monitor",
            run: async () => {
                const ids = await callKw("l10n_cl_dte.document", "search", [[["batch_id.name", "=", "Tour batch"]]]);
                await callKw("l10n_cl_dte.document", "write", [ids, { state: "accepted" }]);
            },
        },
        {
            content: "The monitor refreshes by itself: the batch is done",
            trigger: ".o_l10n_cl_dte_batch_monitor tr:contains('Tour batch') .o_dte_batch_progress[data-state='done']:contains('100%')",
        },
    ],
});
