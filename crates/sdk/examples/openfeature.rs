//! Evaluates a flag through OpenFeature, with the Switchyard provider underneath, and prints
//! it again whenever the server changes it.
//!
//! ```sh
//! switchyard serve &                      # prints an admin token on first start
//! switchyard token create app --role sdk --env production   # an SDK key
//! SWITCHYARD_URL=http://127.0.0.1:8080 SWITCHYARD_SDK_KEY=sy_… \
//!   cargo run -p switchyard-sdk --features openfeature --example openfeature -- new-checkout user-42
//! ```

use std::time::Duration;

use open_feature::{EvaluationContext, OpenFeature};
use switchyard_sdk::openfeature::{ProviderEvent, SwitchyardProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SWITCHYARD_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("SWITCHYARD_SDK_KEY").map_err(|_| {
        "set SWITCHYARD_SDK_KEY to an SDK key (switchyard token create … --role sdk)"
    })?;
    let mut args = std::env::args().skip(1);
    let flag = args.next().unwrap_or_else(|| "new-checkout".into());
    let user = args.next().unwrap_or_else(|| "user-42".into());
    let once = std::env::var_os("ONCE").is_some();

    let sdk = switchyard_sdk::Client::builder(url, key)
        .init_timeout(Duration::from_secs(3))
        .build()
        .await?;
    let provider = SwitchyardProvider::new(sdk.clone());
    let mut events = provider.events();
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    let client = api.create_client();
    drop(api);

    let ctx = EvaluationContext::default().with_targeting_key(user.clone());
    loop {
        let details = client.get_bool_details(&flag, Some(&ctx), None).await;
        match details {
            Ok(d) => println!(
                "{flag} for {user}: {} (variant {:?}, reason {:?})",
                d.value, d.variant, d.reason
            ),
            Err(e) => println!(
                "{flag} for {user}: default false ({:?}: {:?})",
                e.code, e.message
            ),
        }
        if once {
            break;
        }
        // Wait for the next change (or a connection change) before asking again.
        match events.recv().await {
            Some(ProviderEvent::ConfigurationChanged { revision }) => {
                println!("-- changed (revision {revision})")
            }
            Some(other) => println!("-- {other:?}"),
            None => break,
        }
    }
    sdk.shutdown().await;
    Ok(())
}
