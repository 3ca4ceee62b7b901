-- wrk script: OFREP single-flag evaluation with a realistic context.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SDK_KEY")
wrk.body = '{"context":{"targetingKey":"user-42","email":"jane@example.com","plan":"pro","tenant":{"id":"tenant-beta-1"},"app":{"version":"5.2.0"}}}'
