// smd-apply runs sequences of server-side applies through sigs.k8s.io/structured-merge-diff, the
// library the Kubernetes API server uses for server-side apply, so that the API test server's apply
// can be compared with it (testserver/tests/smd.rs).
//
// Input (stdin, JSON):
//
//	{"schema": "<structured-merge-diff schema YAML>", "type": "<type name in the schema>",
//	 "apiVersion": "<the managers' API version>",
//	 "cases": [{"name": "...", "steps": [{"manager": "m", "force": false, "object": {...}}]}]}
//
// A step with "operation": "update" is a write other than an apply (object: the whole object
// written), which takes over the fields it changes, adds or removes.
//
// Output (stdout, JSON): for every case and step, the object after the step, each applier's
// fieldsV1 (as the API server serializes managedFields), and the conflict if the step was refused,
// with the message and causes the API server answers with (409 Conflict). A refused step leaves the
// object and the managers as they were. As the API server does, apiVersion, kind and server-set
// metadata are never owned (its strip-meta field manager).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/structured-merge-diff/v4/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v4/merge"
	"sigs.k8s.io/structured-merge-diff/v4/typed"
)

type input struct {
	Schema     string     `json:"schema"`
	Type       string     `json:"type"`
	APIVersion string     `json:"apiVersion"`
	Cases      []caseSpec `json:"cases"`
}

type caseSpec struct {
	Name  string `json:"name"`
	Steps []step `json:"steps"`
}

type step struct {
	Manager string `json:"manager"`
	// "update" for a write that is not an apply (create, update, patch: Object is the whole
	// object written); else an apply of the configuration Object.
	Operation string                 `json:"operation"`
	Force     bool                   `json:"force"`
	Object    map[string]interface{} `json:"object"`
}

// updater is the key of a manager's Update entry, beside its Apply entry (the API server keys
// them by manager and operation too).
func updater(manager string) string { return manager + "\x00update" }

type cause struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

type conflict struct {
	Message string  `json:"message"`
	Causes  []cause `json:"causes"`
}

type stepResult struct {
	Object        interface{}                `json:"object"`
	ManagedFields map[string]json.RawMessage `json:"managedFields"`
	Conflict      *conflict                  `json:"conflict"`
}

type caseResult struct {
	Name  string       `json:"name"`
	Steps []stepResult `json:"steps"`
}

// sameVersion is the converter of a single-version type: there is nothing to convert.
type sameVersion struct{}

func (sameVersion) Convert(v *typed.TypedValue, _ fieldpath.APIVersion) (*typed.TypedValue, error) {
	return v, nil
}

func (sameVersion) IsMissingVersionError(error) bool { return false }

// stripped are the paths the API server never records as owned (apiVersion, kind, the metadata
// node itself and the metadata fields the server sets).
func stripped() *fieldpath.Set {
	paths := []fieldpath.Path{
		fieldpath.MakePathOrDie("apiVersion"),
		fieldpath.MakePathOrDie("kind"),
		fieldpath.MakePathOrDie("metadata"),
	}
	for _, f := range []string{"name", "namespace", "creationTimestamp", "selfLink", "uid",
		"resourceVersion", "generation", "managedFields"} {
		paths = append(paths, fieldpath.MakePathOrDie("metadata", f))
	}
	return fieldpath.NewSet(paths...)
}

// conflictStatus is what the API server answers for apply conflicts: the message of its
// NewConflictError (one conflict on one line, several grouped by sorted manager, each manager's
// paths in the field set's order) and one FieldManagerConflict cause per conflicting field, here
// sorted the same way (the API server lists them in map order).
func conflictStatus(cs merge.Conflicts) *conflict {
	sorted := append(merge.Conflicts{}, cs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Manager != sorted[j].Manager {
			return sorted[i].Manager < sorted[j].Manager
		}
		return sorted[i].Path.Compare(sorted[j].Path) < 0
	})
	out := &conflict{}
	for _, c := range sorted {
		out.Causes = append(out.Causes, cause{
			Reason:  "FieldManagerConflict",
			Message: fmt.Sprintf("conflict with %q", c.Manager),
			Field:   c.Path.String(),
		})
	}
	if len(sorted) == 1 {
		out.Message = fmt.Sprintf("Apply failed with 1 conflict: conflict with %q: %v", sorted[0].Manager, sorted[0].Path)
		return out
	}
	lines := []string{}
	last := ""
	for _, c := range sorted {
		if c.Manager != last || len(lines) == 0 {
			lines = append(lines, fmt.Sprintf("conflicts with %q:", c.Manager))
			last = c.Manager
		}
		lines = append(lines, fmt.Sprintf("- %v", c.Path))
	}
	out.Message = fmt.Sprintf("Apply failed with %d conflicts: %s", len(sorted), strings.Join(lines, "\n"))
	return out
}

func run(in input) ([]caseResult, error) {
	parser, err := typed.NewParser(typed.YAMLObject(in.Schema))
	if err != nil {
		return nil, fmt.Errorf("schema: %v", err)
	}
	pt := parser.Type(in.Type)
	if !pt.IsValid() {
		return nil, fmt.Errorf("schema: no type %q", in.Type)
	}
	version := fieldpath.APIVersion(in.APIVersion)
	strip := stripped()
	results := []caseResult{}
	for _, c := range in.Cases {
		smd := &merge.Updater{Converter: sameVersion{}}
		live, err := pt.FromUnstructured(map[string]interface{}{})
		if err != nil {
			return nil, err
		}
		managers := fieldpath.ManagedFields{}
		res := caseResult{Name: c.Name}
		for i, s := range c.Steps {
			config, err := pt.FromUnstructured(s.Object)
			if err != nil {
				return nil, fmt.Errorf("%s, step %d: %v", c.Name, i+1, err)
			}
			var newObject *typed.TypedValue
			var newManagers fieldpath.ManagedFields
			if s.Operation == "update" {
				newObject, newManagers, err = smd.Update(live, config, version, managers.Copy(), updater(s.Manager))
			} else {
				newObject, newManagers, err = smd.Apply(live, config, version, managers.Copy(), s.Manager, s.Force)
			}
			sr := stepResult{}
			if err != nil {
				cs, ok := err.(merge.Conflicts)
				if !ok {
					return nil, fmt.Errorf("%s, step %d: %v", c.Name, i+1, err)
				}
				sr.Conflict = conflictStatus(cs)
			} else {
				if newObject != nil {
					live = newObject
				}
				managers = fieldpath.ManagedFields{}
				for m, set := range newManagers {
					owned := set.Set().Difference(strip)
					if !owned.Empty() {
						managers[m] = fieldpath.NewVersionedSet(owned, set.APIVersion(), set.Applied())
					}
				}
			}
			sr.Object = live.AsValue().Unstructured()
			sr.ManagedFields = map[string]json.RawMessage{}
			for m, set := range managers {
				if !set.Applied() {
					// Update entries: the test server does not track what updates own.
					continue
				}
				fields, err := set.Set().ToJSON()
				if err != nil {
					return nil, err
				}
				sr.ManagedFields[m] = fields
			}
			res.Steps = append(res.Steps, sr)
		}
		results = append(results, res)
	}
	return results, nil
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smd-apply:", err)
		os.Exit(2)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, "smd-apply: input:", err)
		os.Exit(2)
	}
	results, err := run(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smd-apply:", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(map[string]interface{}{"cases": results}); err != nil {
		fmt.Fprintln(os.Stderr, "smd-apply:", err)
		os.Exit(1)
	}
}
