// An independent Salesforce client, jsforce, run unchanged against cosell's Salesforce emulator: it logs in
// with the OAuth2 username-password flow (client id and secret), then queries, creates, updates, upserts and
// uses sObject Collections. It exits non-zero on the first surprise.
//
// Usage: SF_URL=http://127.0.0.1:8082 node check.js   (credentials default to the emulator's defaults)
'use strict';
const assert = require('node:assert/strict');
const jsforce = require('jsforce');

const url = process.env.SF_URL || 'http://127.0.0.1:8082';
const clientId = process.env.SF_CLIENT_ID || 'cosell-emulator-client';
const clientSecret = process.env.SF_CLIENT_SECRET || 'cosell-emulator-secret';
const username = process.env.SF_USERNAME || 'integration@cosell.example';
const password = process.env.SF_PASSWORD || 'cosell-emulator-password';

async function main() {
  const conn = new jsforce.Connection({ oauth2: { loginUrl: url, clientId, clientSecret }, version: '62.0' });
  const user = await conn.login(username, password);
  assert.ok(conn.accessToken, 'no access token');
  assert.ok(user.id && user.organizationId, 'login did not name the user and org');
  const step = (name) => console.log(`ok  ${name}`);
  step('login (OAuth2 password flow)');

  const acc = await conn.sobject('Account').create({ Name: 'jsforce Customer', BillingCountry: 'US', BillingPostalCode: '98052' });
  assert.ok(acc.success && acc.id, 'account create');
  const opp = await conn.sobject('Opportunity').create({
    Name: 'jsforce Deal', StageName: 'Prospecting', CloseDate: '2027-06-30', Amount: 1200, AccountId: acc.id,
    Sync_with_Partner_Center__c: true,
  });
  assert.ok(opp.success && opp.id.length === 18, 'opportunity create');
  step('create');

  const upd = await conn.sobject('Opportunity').update({ Id: opp.id, Amount: 1500, How_can_Microsoft_help__c: 'Proof of concept or demo' });
  assert.ok(upd.success, 'update');
  const got = await conn.sobject('Opportunity').retrieve(opp.id);
  assert.equal(got.Amount, 1500);
  assert.equal(got.How_can_Microsoft_help__c, 'Proof of concept or demo');
  step('update and retrieve');

  await assert.rejects(conn.sobject('Opportunity').update({ Id: opp.id, StageName: 'Not a stage' }),
    (err) => err.errorCode === 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST');
  step('strict picklist refusal');

  const up1 = await conn.sobject('Opportunity').upsert({ Referral_Identifier__c: 'jsforce-ref-1', Name: 'Upserted', StageName: 'Qualification', CloseDate: '2027-07-01' }, 'Referral_Identifier__c');
  assert.ok(up1.success && up1.created === true, 'upsert insert');
  const up2 = await conn.sobject('Opportunity').upsert({ Referral_Identifier__c: 'jsforce-ref-1', Amount: 99 }, 'Referral_Identifier__c');
  assert.ok(up2.success && up2.created === false, 'upsert update');
  step('upsert by Referral Identifier');

  const q = await conn.query(
    "SELECT Id, Name, Amount, Account.Name, (SELECT Id FROM Microsoft_Solutions__r) FROM Opportunity " +
    "WHERE Sync_with_Partner_Center__c = true AND Amount > 1000 ORDER BY CreatedDate LIMIT 10");
  assert.equal(q.totalSize, 1);
  assert.equal(q.records[0].Account.Name, 'jsforce Customer');
  step('query with parent field and child subquery');

  const many = [];
  for (let i = 0; i < 5; i++) many.push({ Name: `Batch Account ${i}` });
  many.push({ BillingCity: 'no name' });
  const created = await conn.sobject('Account').create(many, { allOrNone: false });
  assert.equal(created.length, 6);
  assert.ok(created.slice(0, 5).every((r) => r.success));
  assert.equal(created[5].success, false);
  const ids = created.slice(0, 5).map((r) => r.id);
  const updated = await conn.sobject('Account').update(ids.map((id) => ({ Id: id, Phone: '+1 425 555 0100' })), { allOrNone: true });
  assert.ok(updated.every((r) => r.success), 'collection update');
  const removed = await conn.sobject('Account').destroy(ids);
  assert.ok(removed.every((r) => r.success), 'collection delete');
  step('sObject Collections create / update / delete');

  const count = await conn.query('SELECT COUNT() FROM Account');
  assert.equal(count.totalSize, 1);
  step('count');
  console.log('jsforce check passed');
}

main().catch((err) => {
  console.error('jsforce check failed:', err && (err.stack || err));
  process.exit(1);
});
