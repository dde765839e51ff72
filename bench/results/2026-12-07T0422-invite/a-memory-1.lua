n, answered, other = 0, 0, 0
function request()
  n = n + 1
  local body = string.format('{"email":"a-memory-1-%d@bench.example","name":"Bench"}', n)
  return wrk.format("POST", "/api/v1/customers", {["Content-Type"] = "application/json"}, body)
end
function response(status)
  if status == 200 then answered = answered + 1 else other = other + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done()
  for _, thread in ipairs(threads) do
    io.write(string.format("answered 200: %d, other: %d\n", thread:get("answered"), thread:get("other")))
  end
end
