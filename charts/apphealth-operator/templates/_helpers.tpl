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
The `rules:` of the operator's ClusterRole or Roles: the granted entries of the rule table
(_rules.tpl, generated from the code) merged
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
