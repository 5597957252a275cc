-- Argo CD health check for keyward.dev ApiKey (resource.customizations.health.keyward.dev_ApiKey).
-- Healthy only when the operator has seen this generation and says Ready=True: the key's Secret
-- then holds a token the webhook accepts. Reasons are the operator's condition reasons.

-- Ready=False for good: only a change to the spec (or another object) moves the key on.
local degraded = {
  NotPermitted = true, InvalidSpec = true, ScopeNotGranted = true, MaxKeysExceeded = true,
  ServiceUserNotPermitted = true, SecretConflict = true, Leaked = true, Expired = true, Revoked = true,
}
-- Ready=False because someone switched the key off on purpose.
local suspended = { Disabled = true, Suspended = true }

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then return c end
  end
  return nil
end

local function health()
  local status = obj.status
  if status == nil or status.conditions == nil or status.observedGeneration == nil then
    return { status = "Progressing", message = "Waiting for the keyward operator" }
  end
  if obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation then
    return { status = "Progressing", message = "Waiting for the keyward operator to see generation " .. obj.metadata.generation }
  end
  local stalled = condition(status.conditions, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return { status = "Degraded", message = stalled.message }
  end
  local ready = condition(status.conditions, "Ready")
  if ready ~= nil and ready.status == "False" and degraded[ready.reason] then
    return { status = "Degraded", message = ready.message }
  end
  local reconciling = condition(status.conditions, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    return { status = "Progressing", message = reconciling.message }
  end
  if ready == nil or (ready.observedGeneration ~= nil and obj.metadata.generation ~= nil and ready.observedGeneration < obj.metadata.generation) then
    return { status = "Progressing", message = "Waiting for the keyward operator" }
  end
  if ready.status == "True" then
    return { status = "Healthy", message = ready.message }
  end
  if suspended[ready.reason] then
    return { status = "Suspended", message = ready.message }
  end
  return { status = "Progressing", message = ready.message }
end

return health()
