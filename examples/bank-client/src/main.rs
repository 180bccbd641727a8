//! `bank-client ADDR`: opens two accounts, moves money between them and prints the balances,
//! using only the generated client.

use bank_client::pb::bank_client::BankClient;
use bank_client::pb::{BalanceRequest, OpenRequest, TransferRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: bank-client HOST:PORT")?;
    let mut bank = BankClient::connect(format!("http://{addr}")).await?;
    for (account, initial) in [("alice", 100), ("bob", 0)] {
        match bank
            .open(OpenRequest {
                account: account.into(),
                initial,
            })
            .await
        {
            Ok(reply) => println!(
                "opened {account} with {} (request {:?})",
                reply.get_ref().balance,
                reply.metadata().get("cairn-request-id")
            ),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                println!("{account} is already open")
            }
            Err(status) => return Err(status.into()),
        }
    }
    match bank
        .transfer(TransferRequest {
            from: "alice".into(),
            to: "bob".into(),
            amount: 30,
        })
        .await
    {
        Ok(reply) => println!("transferred 30: {:?}", reply.into_inner()),
        Err(status) => println!("transfer refused: {:?} {}", status.code(), status.message()),
    }
    for account in ["alice", "bob"] {
        let reply = bank
            .balance(BalanceRequest {
                account: account.into(),
            })
            .await?;
        println!("{account}: {}", reply.into_inner().balance);
    }
    Ok(())
}
