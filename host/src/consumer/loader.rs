//! Loads a candidate version (a deployed version, a canary's or a shadow's
//! candidate, a changed component file) the way every host does: compiled
//! off the async threads, one at a time host-wide, instantiated once.

use crate::effects::EffectPolicy;
use crate::error::Error;
use crate::pipeline::PluginContext;
use crate::plugin::LoadedPlugin;

/// Compiles and instantiates a candidate once, off the async threads.
pub(super) async fn load(
    ctx: &PluginContext,
    bytes: Vec<u8>,
    what: String,
) -> Result<LoadedPlugin, Error> {
    let (engine, name, limits) = (
        ctx.plugin.engine.clone(),
        ctx.plugin.name.to_string(),
        ctx.config.limits.clone(),
    );
    // One candidate compiles at a time, host-wide: a deploy to every plugin
    // at once (or a hostile one) takes one compile's CPU and memory, not N.
    let _permit = crate::plugin::registry::candidate_permit().await;
    let loaded = tokio::task::spawn_blocking(move || {
        LoadedPlugin::load_bytes(&engine, &name, &bytes, &what, &limits)
    })
    .await
    .map_err(|source| Error::Task {
        task: format!("loading a candidate of plugin {:?}", ctx.plugin.name),
        source,
    })??
    .with_effects(EffectPolicy::from_config(&ctx.config));
    loaded.instantiate().await?;
    Ok(loaded)
}
