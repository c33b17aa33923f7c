-- The context engine: what a delivery keeps of its moment's context — the micromoment it
-- answered, the evidence that decided it, the customer's p_buy and which model gave it.
ALTER TABLE deliveries ADD COLUMN context jsonb;
