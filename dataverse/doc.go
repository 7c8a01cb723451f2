// Package dataverse is the vocabulary of Microsoft Dataverse that every
// layer of crmgate shares: the rules for logical column names and other
// identifiers, GUIDs, the contact snapshot that sign-in, sessions and
// policies pass around, the conditions a contact query is made of, and the
// errors a contact directory returns.
//
// It is a leaf: it imports nothing from crmgate, so that config, policies,
// authz and crmclient all check a name with the same rule and hand the same
// Contact to one another without conversions. Facts about the Web API are
// cited from their public sources; the Web API reference starts at
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview.
package dataverse
