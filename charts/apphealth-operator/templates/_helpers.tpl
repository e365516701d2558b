{{/*
The chart name, or nameOverride.
*/}}
{{- define "apphealth-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name (with the chart
name appended unless the release name already contains it), cut to 63 characters.
*/}}
{{- define "apphealth-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "apphealth-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "apphealth-operator.labels" -}}
helm.sh/chart: {{ include "apphealth-operator.chart" . }}
{{ include "apphealth-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator's pods (immutable in the Deployment's selector).
*/}}
{{- define "apphealth-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apphealth-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "apphealth-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apphealth-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease: one per release, so two releases in a namespace do not contend.
*/}}
{{- define "apphealth-operator.leaseName" -}}
{{- include "apphealth-operator.fullname" . }}
{{- end }}

{{- define "apphealth-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Values that the schema cannot check on its own; included by every template that depends on them,
so the render fails with a message that says what to change.
*/}}
{{- define "apphealth-operator.validate" -}}
{{- if and .Values.rbac.namespaced (empty .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs the namespaces to watch: set watchNamespaces (e.g. --set 'watchNamespaces={shop,payments}'); without them the operator would have no rights anywhere" }}
{{- end }}
{{- end }}

{{/*
Every permission the operator uses, mirroring `RULES` in src/rbac.rs (tests/integration/chart.rs
checks that the rendered rules equal that list, nothing missing, nothing extra). `need` lists the
permissions.* values that must all be true for the rule to be granted; an empty list is the
controller's own rights, always granted. pods/exec is a CollectDiagnostics right in the code and is
granted only with diagnosticsExec as well.
*/}}
{{- define "apphealth-operator.ruleTable" -}}
- {need: [], group: apphealth.io, resource: apphealthpolicies, verbs: [get, list, watch]}
- {need: [], group: apphealth.io, resource: apphealthpolicies/status, verbs: [patch]}
- {need: [], group: apps, resource: deployments, verbs: [get, list, watch]}
- {need: [], group: apps, resource: statefulsets, verbs: [get, list, watch]}
- {need: [], group: "", resource: pods, verbs: [get, list, watch]}
- {need: [], group: "", resource: configmaps, verbs: [get, list, watch]}
- {need: [], group: "", resource: secrets, verbs: [get, list, watch]}
- {need: [], group: "", resource: services, verbs: [get]}
- {need: [], group: metrics.k8s.io, resource: pods, verbs: [list]}
- {need: [], group: events.k8s.io, resource: events, verbs: [create, patch]}
- {need: [collectDiagnostics], group: "", resource: pods/log, verbs: [get]}
- {need: [collectDiagnostics], group: "", resource: events, verbs: [list]}
- {need: [collectDiagnostics], group: "", resource: configmaps, verbs: [create, delete]}
- {need: [collectDiagnostics, diagnosticsExec], group: "", resource: pods/exec, verbs: [get, create]}
- {need: [restartPods], group: "", resource: pods/eviction, verbs: [create]}
- {need: [rolloutRestart], group: apps, resource: deployments, verbs: [patch]}
- {need: [rolloutRestart], group: apps, resource: statefulsets, verbs: [patch]}
- {need: [rollback], group: apps, resource: replicasets, verbs: [list]}
- {need: [rollback], group: apps, resource: deployments, verbs: [update]}
- {need: [scaleOut], group: apps, resource: deployments, verbs: [patch]}
- {need: [scaleOut], group: apps, resource: statefulsets, verbs: [patch]}
- {need: [scaleOut], group: apps, resource: deployments/scale, verbs: [get, patch]}
- {need: [scaleOut], group: apps, resource: statefulsets/scale, verbs: [get, patch]}
- {need: [scaleOut], group: autoscaling, resource: horizontalpodautoscalers, verbs: [get, list, patch]}
- {need: [scaleUp], group: apps, resource: deployments, verbs: [patch]}
- {need: [scaleUp], group: apps, resource: statefulsets, verbs: [patch]}
- {need: [scaleUp], group: "", resource: pods/resize, verbs: [patch]}
{{- end }}

{{/*
The `rules:` of the operator's ClusterRole or Roles: the granted entries of the rule table merged
per API group and resource, then the resources of a group with the same verbs in one rule. Verbs
and resources sorted; rules ordered by API group (core first), then by their first resource.
*/}}
{{- define "apphealth-operator.rules" -}}
{{- $perms := .Values.permissions }}
{{- /* "group resource" -> sorted verbs */}}
{{- $verbsByResource := dict }}
{{- range $rule := include "apphealth-operator.ruleTable" . | fromYamlArray }}
{{- $granted := true }}
{{- range $rule.need }}
{{- if not (get $perms .) }}
{{- $granted = false }}
{{- end }}
{{- end }}
{{- if $granted }}
{{- $key := printf "%s %s" $rule.group $rule.resource }}
{{- $_ := set $verbsByResource $key (concat (get $verbsByResource $key | default (list)) $rule.verbs | uniq | sortAlpha) }}
{{- end }}
{{- end }}
{{- /* "group verbs" -> sorted resources */}}
{{- $resourcesByVerbs := dict }}
{{- range $key := keys $verbsByResource | sortAlpha }}
{{- $parts := splitList " " $key }}
{{- $byVerbs := printf "%s %s" (index $parts 0) (get $verbsByResource $key | join ",") }}
{{- $_ := set $resourcesByVerbs $byVerbs (append (get $resourcesByVerbs $byVerbs | default (list)) (index $parts 1)) }}
{{- end }}
{{- /* "group first-resource" -> "group verbs", for the order */}}
{{- $order := dict }}
{{- range $key, $resources := $resourcesByVerbs }}
{{- $_ := set $order (printf "%s %s" (splitList " " $key | first) (first $resources)) $key }}
{{- end }}
{{- range $sortKey := keys $order | sortAlpha }}
{{- $key := get $order $sortKey }}
{{- $parts := splitList " " $key }}
- apiGroups: [{{ index $parts 0 | quote }}]
  resources: [{{ range $i, $r := get $resourcesByVerbs $key }}{{ if $i }}, {{ end }}{{ $r | quote }}{{ end }}]
  verbs: [{{ range $i, $v := splitList "," (index $parts 1) }}{{ if $i }}, {{ end }}{{ $v | quote }}{{ end }}]
{{- end }}
{{- end }}
