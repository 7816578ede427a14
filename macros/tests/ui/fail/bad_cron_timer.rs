use enoki::prelude::*;

#[derive(Dependencies)]
struct Reports;

#[service(name = "reports")]
impl Reports {
    // Five fields: cron schedules start with seconds.
    #[timer(cron = "*/5 * * * *")]
    async fn five_fields(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[timer(cron = "0 61 * * * *")]
    async fn bad_minute(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[timer(cron = "0 0 2 * * *", timezone = "Europe/Pariss")]
    async fn bad_zone(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[timer(interval = 5, cron = "0 0 2 * * *")]
    async fn both(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[timer(interval = 5, timezone = "UTC")]
    async fn zone_without_cron(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

fn main() {}
