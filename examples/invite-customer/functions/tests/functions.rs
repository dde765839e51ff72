//! The "fifth project": the functions tested with no infrastructure — `operate` as a plain
//! function, the handler given/when/then, the projector and the resolver in one process on the
//! in-memory bridge and datastore, and a rebuild.

use std::sync::Arc;
use std::time::Duration;

use invite_customer_functions::*;
use purest_core::prelude::*;
use purest_core::{Address, RunningApp};
use purest_cqrs::testing::{SCENARIO_TIME, Scenario, event};
use purest_cqrs::{Datastore, LowContext, LowHandler, ProjectorSink, Unit, rebuild, rebuild_projector};
use purest_eventstore::{Expected, OutboxRelay, Projections, RunningProjections};

fn ann() -> InviteCustomer {
    InviteCustomer {
        email: "Ann@Example.COM".into(),
        name: " Ann ".into(),
    }
}

fn ann_invited() -> CustomerInvited {
    CustomerInvited {
        customer_id: Id::from_u128(1).to_string(),
        email: "ann@example.com".into(),
        name: "Ann".into(),
        invited_at: SCENARIO_TIME,
    }
}

#[test]
fn operate_is_a_plain_function() {
    let ctx = LowContext::new(Id::from_u128(42), 7);
    let handler = InviteCustomerHandler;
    let fresh =
        <InviteCustomerHandler as LowHandler<MemoryCustomers>>::operate(&handler, &ctx, &ann(), Known { customer_id: None }).unwrap();
    assert_eq!((fresh.stream(), fresh.expected()), ("customer-ann@example.com", Expected::NoStream));
    assert_eq!(fresh.events(), ["customerInvited"]);
    let invited: CustomerInvited = fresh.payload(0).unwrap();
    assert_eq!(
        (invited.email.as_str(), invited.name.as_str(), invited.invited_at),
        ("ann@example.com", "Ann", 7)
    );
    assert_eq!(invited.customer_id, Id::from_u128(42).to_string());

    let known = Known {
        customer_id: Some("c-1".into()),
    };
    let refused = <InviteCustomerHandler as LowHandler<MemoryCustomers>>::operate(&handler, &ctx, &ann(), known).unwrap();
    assert_eq!(refused.stream(), format!("invitation-{}", Id::from_u128(42)));
    assert_eq!(refused.events(), ["invitationRejected"]);
}

#[tokio::test]
async fn a_new_email_is_invited_and_a_known_one_refused() {
    let db = MemoryCustomers::default();
    Scenario::new(InviteCustomerHandler, db.clone())
        .when(ann())
        .then([event(CUSTOMER_INVITED, ann_invited())])
        .await;
    assert_eq!(db.tables().registry.get("ann@example.com"), Some(&Id::from_u128(1).to_string()));

    Scenario::new(InviteCustomerHandler, MemoryCustomers::default())
        .given("customer-ann@example.com", [event(CUSTOMER_INVITED, ann_invited())])
        .when(ann())
        .then([event(
            INVITATION_REJECTED,
            InvitationRejected {
                email: "ann@example.com".into(),
                reason: "ann@example.com is invited already".into(),
            },
        )])
        .await;
}

/// The three services and, beside them, the relay and the projector: deployment (a) in a test.
struct OneProcess {
    app: RunningApp,
    projections: RunningProjections,
    db: MemoryCustomers,
}

async fn one_process(deadline: Duration, with_projector: bool) -> OneProcess {
    let db = MemoryCustomers::default();
    let mut host = Host::new()
        .service(customer_service(db.clone()))
        .service(views_service(db.clone()))
        .service(api_service(ResolverSettings { deadline }));
    for event in RESOLVER_AWAITS {
        host = host.awaits(event);
    }
    let app = host.start().await.unwrap();
    let relay = OutboxRelay::new(app.bridge().clone(), Address::new("customer", "1", ""));
    let mut projections = Projections::new(db.events()).add(relay, db.checkpoints());
    if with_projector {
        let projector = ProjectorSink::new(CustomersProjector, db.clone())
            .announce_on(app.bridge().clone(), Address::new("customer-views", "1", "customers"));
        projections = projections.add_sink(Arc::new(projector));
    }
    OneProcess {
        app,
        projections: projections.poll_every(Duration::from_millis(50)).start(),
        db,
    }
}

impl OneProcess {
    async fn stop(self) {
        self.projections.stop().await;
        self.app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_answers_with_the_projected_customer_or_the_refusal() {
    let one = one_process(Duration::from_secs(10), true).await;
    let client = one.app.client();
    let customer = client.invoke(POST_CUSTOMER, ann()).await.unwrap();
    assert_eq!((customer.email.as_str(), customer.name.as_str()), ("ann@example.com", "Ann"));
    let read = client
        .call(GET_CUSTOMER)
        .params(CustomerKey {
            email: "ANN@example.com".into(),
        })
        .invoke(())
        .await
        .unwrap();
    assert_eq!(read, customer, "read your writes: the query shows what the POST answered");
    let again = client.invoke(POST_CUSTOMER, ann()).await.unwrap_err();
    assert_eq!((again.status, again.message.as_str()), (409, "ann@example.com is invited already"));
    let unknown = client
        .call(GET_CUSTOMER)
        .params(CustomerKey {
            email: "bob@example.com".into(),
        })
        .invoke(())
        .await
        .unwrap_err();
    assert_eq!(unknown.status, 404);

    // Eight invitations of one email at once: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .invoke(
                        POST_CUSTOMER,
                        InviteCustomer {
                            email: "cy@example.com".into(),
                            name: format!("Cy {i}"),
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap().map(|customer| customer.email).map_err(|e| e.status));
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(_) | Err(409))), "{outcomes:?}");
    assert_eq!(one.db.tables().customers.len(), 2);
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_read_model_by_the_deadline_the_resolver_answers_202() {
    let one = one_process(Duration::from_millis(200), false).await;
    let later = one.app.client().invoke(POST_CUSTOMER, ann()).await.unwrap_err();
    assert_eq!((later.status, later.location()), (202, Some("/api/v1/customers/ann@example.com")));
    assert_eq!(one.db.tables().registry.len(), 1, "the invitation itself was committed");
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_store_through_the_write_functions_rebuilds_both_tables() {
    let one = one_process(Duration::from_secs(10), true).await;
    for name in ["ann", "bob", "cy"] {
        let invite = InviteCustomer {
            email: format!("{name}@example.com"),
            name: name.into(),
        };
        one.app.client().invoke(POST_CUSTOMER, invite).await.unwrap();
    }
    let db = one.db.clone();
    one.stop().await;
    let before = db.tables();
    assert_eq!((before.registry.len(), before.customers.len()), (3, 3));
    let mut unit = db.begin().await.unwrap();
    unit.tables_mut().registry.clear();
    unit.tables_mut().customers.clear();
    unit.commit().await.unwrap();
    rebuild(&InviteCustomerHandler, &db).await.unwrap();
    rebuild_projector(CustomersProjector, db.clone()).await.unwrap();
    assert_eq!(*db.tables(), *before);
}
