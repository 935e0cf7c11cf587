-- wrk script: POSTs JSON bodies read from a file (one per line), cycling through them so
-- consecutive requests carry different rows. Same script for both services compared.
-- Usage: wrk -s post.lua URL -- BODIES_FILE
local bodies, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, bodies[i])
end
