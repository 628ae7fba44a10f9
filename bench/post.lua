-- wrk script: POST the file named by $BODY_FILE with $CONTENT_TYPE and, if set, $API_KEY.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
local key = os.getenv("API_KEY")
if key and key ~= "" then wrk.headers["X-API-Key"] = key end
