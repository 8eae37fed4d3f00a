//! CPU accounting: each invocation's fuel and wall time charged to its
//! plugin and, when `[plugin.accounting] tenant_field` names a field the
//! entry carries, to that tenant.

use super::PluginContext;
use super::tally::Tally;
use crate::plugin::{Field, Invocation};

/// Charges one invocation (whatever it came to: a trap burns fuel too).
pub(crate) fn charge(
    ctx: &PluginContext,
    fields: &[Field],
    invocation: &Invocation,
    tally: &mut Tally,
) {
    let seconds = invocation.elapsed.as_secs_f64();
    tally.charge(invocation.fuel, seconds);
    let tenant = ctx
        .config
        .accounting
        .tenant_field
        .as_deref()
        .and_then(|name| fields.iter().find(|f| f.name == name));
    if let Some(tenant) = tenant {
        ctx.metrics
            .release
            .charge_tenant(&tenant.value, invocation.fuel, seconds);
    }
}
