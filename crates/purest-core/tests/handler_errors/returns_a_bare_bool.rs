use purest_core::prelude::*;

async fn taken(Payload(email): Payload<String>) -> bool {
    email.is_empty()
}

fn main() {
    let _ = Command::new("emailTaken", taken);
}
