use purest_core::prelude::*;

async fn taken(Payload(email): Payload<String>) -> Result<bool, String> {
    Ok(email.is_empty())
}

fn main() {
    let _ = Command::new("emailTaken", taken);
}
