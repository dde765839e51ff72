use purest_core::prelude::*;

#[derive(Serialize)]
struct User {
    name: String,
}

async fn register(Payload(name): Payload<String>) -> Result<User, HandledError> {
    Ok(User { name })
}

fn main() {
    let _ = Command::new("register", register);
}
