-- Argo CD resource health for apphealth.io/AppHealthPolicy, from the conditions the operator writes.
-- Install: argocd-cm data key `resource.customizations.health.apphealth.io_AppHealthPolicy`
-- (or the chart value argocd's resource.customizations in argo-cd's own chart).
--   Suspended   spec.suspend, or Ready=False reason Suspended
--   Progressing no verdict yet, the operator has not seen the latest spec, or a ladder is remediating
--   Degraded    the policy cannot run (Ready=False), or the target is unhealthy and nothing is fixing it
--   Healthy     Ready=True and Healthy=True
local hs = {}
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: probing and remediation are stopped"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see the latest spec"
  return hs
end

local ready = condition("Ready")
local healthy = condition("Healthy")
local remediating = condition("Remediating")
local blocked = condition("RemediationBlocked")

if ready ~= nil and ready.status == "False" then
  if ready.reason == "Suspended" then
    hs.status = "Suspended"
  else
    hs.status = "Degraded"
  end
  hs.message = ready.message
  return hs
end
if healthy ~= nil and healthy.status == "False" then
  local stuck = blocked ~= nil and blocked.status == "True"
    and (blocked.reason == "LadderExhausted" or blocked.reason == "CircuitOpen" or blocked.reason == "NoRemediation")
  if remediating ~= nil and remediating.status == "True" and not stuck then
    hs.status = "Progressing"
    hs.message = "Remediating: " .. (remediating.message or "")
  else
    hs.status = "Degraded"
    hs.message = healthy.message
    if stuck then
      hs.message = blocked.message
    end
  end
  return hs
end
if healthy ~= nil and healthy.status == "True" then
  hs.status = "Healthy"
  hs.message = healthy.message
  return hs
end
hs.status = "Progressing"
hs.message = "No verdict yet: waiting for the first probes"
return hs
