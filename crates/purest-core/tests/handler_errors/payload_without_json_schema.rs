use purest_core::prelude::*;

#[derive(Clone, Deserialize, Validate)]
struct NewUser {
    #[garde(length(min = 1))]
    name: String,
}

async fn register(Payload(user): Payload<NewUser>) -> Result<String, HandledError> {
    Ok(user.name)
}

fn main() {
    let _ = Command::new("register", register);
}
