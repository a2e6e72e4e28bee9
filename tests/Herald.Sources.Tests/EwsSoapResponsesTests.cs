using System.Text;
using System.Xml;
using System.Xml.Linq;
using System.Xml.Schema;
using Herald.Core.Ports;
using Herald.Sources.Ews;
using Herald.Testing;
using Xunit;

namespace Herald.Sources.Tests;

public sealed class EwsSoapResponsesTests
{
    private static readonly XNamespace M = EwsSoap.MessagesNamespace;

    private static readonly Lazy<XmlSchemaSet> Schemas = new(LoadSchemas);

    /// <summary>
    /// The W3C xml namespace's <c>lang</c> attribute, which types.xsd imports without a location (XmlSchemaSet has no
    /// built-in copy and the tests resolve nothing from the network).
    /// </summary>
    private const string XmlNamespaceSchema = """
        <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://www.w3.org/XML/1998/namespace" xml:lang="en">
          <xs:attribute name="lang"><xs:simpleType><xs:union memberTypes="xs:language"><xs:simpleType><xs:restriction base="xs:string"><xs:enumeration value=""/></xs:restriction></xs:simpleType></xs:union></xs:simpleType></xs:attribute>
          <xs:attribute name="space"><xs:simpleType><xs:restriction base="xs:NCName"><xs:enumeration value="default"/><xs:enumeration value="preserve"/></xs:restriction></xs:simpleType></xs:attribute>
          <xs:attribute name="base" type="xs:anyURI"/>
          <xs:attribute name="id" type="xs:ID"/>
        </xs:schema>
        """;

    /// <summary>
    /// messages.xsd declares <c>SendNotificationResult</c> (type <c>m:SendNotificationResultType</c>, status
    /// <c>t:SubscriptionStatusType</c> in types.xsd); notification-service.wsdl only imports it.
    /// </summary>
    private static XmlSchemaSet LoadSchemas()
    {
        var folder = SharedData.RequireEws();
        var set = new XmlSchemaSet { XmlResolver = null };
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null };
        using (var xml = XmlReader.Create(new StringReader(XmlNamespaceSchema), settings))
        {
            set.Add(null, xml);
        }

        foreach (var file in new[] { "types.xsd", "messages.xsd" })
        {
            using var reader = XmlReader.Create(Path.Combine(folder, file), settings);
            set.Add(null, reader);
        }

        set.Compile();
        return set;
    }

    private static XDocument Load(EwsSoapResponse response) => XDocument.Load(new MemoryStream(response.Body.ToArray()));

    private static List<string> Validate(XElement element)
    {
        var schemas = SchemasOrSkip();
        var errors = new List<string>();
        new XDocument(new XElement(element)).Validate(schemas, (_, e) => errors.Add($"{e.Severity}: {e.Message}"));
        return errors;
    }

    private static XmlSchemaSet SchemasOrSkip()
    {
        SharedData.RequireEws();
        return Schemas.Value;
    }

    [Theory]
    [InlineData(SoapVersion.Soap11, EwsSubscriptionStatus.Ok, "OK")]
    [InlineData(SoapVersion.Soap11, EwsSubscriptionStatus.Unsubscribe, "Unsubscribe")]
    [InlineData(SoapVersion.Soap12, EwsSubscriptionStatus.Ok, "OK")]
    [InlineData(SoapVersion.Soap12, EwsSubscriptionStatus.Unsubscribe, "Unsubscribe")]
    public void SendNotificationResult_IsSoapEnvelopeOfTheRequestVersion(SoapVersion version, EwsSubscriptionStatus status, string text)
    {
        var response = EwsSoapResponses.SendNotificationResult(version, status);
        var doc = Load(response);
        XNamespace soap = EwsSoap.EnvelopeNamespace(version);

        Assert.Equal(200, response.StatusCode);
        Assert.Equal(version == SoapVersion.Soap12 ? "application/soap+xml; charset=utf-8" : "text/xml; charset=utf-8", response.ContentType);
        Assert.Equal(soap + "Envelope", doc.Root!.Name);
        var body = Assert.Single(doc.Root.Elements());
        Assert.Equal(soap + "Body", body.Name);
        var result = Assert.Single(body.Elements());
        Assert.Equal(M + "SendNotificationResult", result.Name);
        Assert.Equal(text, Assert.Single(result.Elements(M + "SubscriptionStatus")).Value);
        Assert.StartsWith("<?xml version=\"1.0\" encoding=\"utf-8\"?>", Encoding.UTF8.GetString(response.Body.Span), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(EwsSubscriptionStatus.Ok)]
    [InlineData(EwsSubscriptionStatus.Unsubscribe)]
    public void SendNotificationResult_ValidatesAgainstMessagesXsd(EwsSubscriptionStatus status)
    {
        foreach (var version in new[] { SoapVersion.Soap11, SoapVersion.Soap12 })
        {
            var result = Load(EwsSoapResponses.SendNotificationResult(version, status)).Descendants(M + "SendNotificationResult").Single();

            Assert.Empty(Validate(result));
        }
    }

    [Fact]
    public void SchemaValidation_RejectsAWrongResult()
    {
        // Proves the validator is live: the same shape with a status the schema does not allow must fail.
        var wrong = new XElement(M + "SendNotificationResult", new XElement(M + "SubscriptionStatus", "Maybe"));
        var missing = new XElement(M + "SendNotificationResult");
        var wrongNamespace = new XElement(M + "SendNotificationResult", new XElement((XNamespace)EwsSoap.TypesNamespace + "SubscriptionStatus", "OK"));

        Assert.NotEmpty(Validate(wrong));
        Assert.NotEmpty(Validate(missing));
        Assert.NotEmpty(Validate(wrongNamespace));
    }

    [Fact]
    public void SendNotificationResult_IsPrecomputed()
    {
        var first = EwsSoapResponses.SendNotificationResult(SoapVersion.Soap11, EwsSubscriptionStatus.Ok);
        var second = EwsSoapResponses.SendNotificationResult(SoapVersion.Soap11, EwsSubscriptionStatus.Ok);

        Assert.True(first.Body.Span == second.Body.Span, "the same bytes are shared, not rebuilt");
        Assert.Same(first.ContentType, second.ContentType);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            _ = EwsSoapResponses.SendNotificationResult((SoapVersion)(1 + (i % 2)), (EwsSubscriptionStatus)(i % 3 % 2));
            _ = EwsSoapResponses.ForVerdict(SoapVersion.Soap11, IngestVerdict.Accepted);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void ForVerdict_MapsAcceptedAndUnsubscribe()
    {
        Assert.Equal(EwsSoapResponses.SendNotificationResult(SoapVersion.Soap12, EwsSubscriptionStatus.Ok), EwsSoapResponses.ForVerdict(SoapVersion.Soap12, IngestVerdict.Accepted));
        Assert.Equal(EwsSoapResponses.SendNotificationResult(SoapVersion.Soap11, EwsSubscriptionStatus.Unsubscribe), EwsSoapResponses.ForVerdict(SoapVersion.Soap11, IngestVerdict.Unsubscribe));
        Assert.Throws<ArgumentOutOfRangeException>(() => EwsSoapResponses.ForVerdict(SoapVersion.Soap11, IngestVerdict.Pending));
    }

    [Fact]
    public void Fault_Soap11_IsClientFaultWith500()
    {
        var response = EwsSoapResponses.Fault(new EwsParseError(EwsParseErrorCode.Malformed, SoapVersion.Soap11));
        XNamespace soap = EwsSoap.Soap11Namespace;
        var fault = Load(response).Root!.Element(soap + "Body")!.Element(soap + "Fault")!;

        Assert.Equal(500, response.StatusCode);
        Assert.Equal("text/xml; charset=utf-8", response.ContentType);
        var code = fault.Element("faultcode")!;
        Assert.Equal(soap + "Client", ResolveQName(code));
        Assert.Equal(EwsParseError.MessageOf(EwsParseErrorCode.Malformed), fault.Element("faultstring")!.Value);
    }

    [Fact]
    public void Fault_Soap12_IsSenderFaultWith400()
    {
        var response = EwsSoapResponses.Fault(new EwsParseError(EwsParseErrorCode.NotSendNotification, SoapVersion.Soap12));
        XNamespace soap = EwsSoap.Soap12Namespace;
        var fault = Load(response).Root!.Element(soap + "Body")!.Element(soap + "Fault")!;

        Assert.Equal(400, response.StatusCode);
        Assert.Equal("application/soap+xml; charset=utf-8", response.ContentType);
        Assert.Equal(soap + "Sender", ResolveQName(fault.Element(soap + "Code")!.Element(soap + "Value")!));
        var text = fault.Element(soap + "Reason")!.Element(soap + "Text")!;
        Assert.Equal("en", text.Attribute(XNamespace.Xml + "lang")!.Value);
        Assert.Equal(EwsParseError.MessageOf(EwsParseErrorCode.NotSendNotification), text.Value);
    }

    [Fact]
    public void Fault_EveryErrorCode_IsWellFormedInBothVersions()
    {
        foreach (var code in Enum.GetValues<EwsParseErrorCode>())
        {
            foreach (var version in new[] { SoapVersion.Soap11, SoapVersion.Soap12 })
            {
                var response = EwsSoapResponses.Fault(new EwsParseError(code, version));
                Assert.True(EwsNotificationParser.TryParseEnvelope(response.Body, out var envelope, out _));
                Assert.True(envelope.IsFault);
                Assert.Equal(version, envelope.SoapVersion);
                Assert.Equal(version == SoapVersion.Soap12 ? "s:Sender" : "s:Client", envelope.FaultCode);
            }
        }
    }

    [Fact]
    public void Fault_CustomReason_IsEscapedAndBounded()
    {
        var reason = "a < b & c > d \u0001\r\n" + new string('x', 1000);

        var response = EwsSoapResponses.Fault(SoapVersion.Soap11, reason);
        var text = Load(response).Descendants("faultstring").Single().Value;

        Assert.StartsWith("a < b & c > d ?  ", text, StringComparison.Ordinal);
        Assert.Equal(256, text.Length);
    }

    private static XName ResolveQName(XElement element)
    {
        var parts = element.Value.Split(':');
        return element.GetNamespaceOfPrefix(parts[0])! + parts[1];
    }
}
